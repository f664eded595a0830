#!/usr/bin/env python
"""Iterations per second of a StyleGAN2 training step (``+experiment=stylegan2_synthetic``'s networks)
with the FIR filters (blur, upsample) done two ways: rosinality's ``upfirdn2d_native`` layout, one
single-channel convolution over a (batch * channels, 1, H, W) stack, and ours, one depthwise
convolution (``bicyclegan_pl.nets.stylegan2.upfirdn2d``). Both give the same images and gradients
(checked here, bit for bit on the machine it runs on).

Usage (from the repository root)::

    python benchmarks/stylegan2_step.py                      # 32 px, widths 32, batch 8, CPU
    python benchmarks/stylegan2_step.py --size 64 --batch 16 --device cuda

One iteration is the GAN trainer's: D on real and G(z1) (no graph into G), R1 on the real images
every ``--r1-every`` iterations (16, as the trainer), then G on G(z2) through D. The two
implementations alternate, ``--repeats`` blocks of ``--iterations`` each; medians are printed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bicyclegan_pl.nets import stylegan2  # noqa: E402

DEPTHWISE = stylegan2.upfirdn2d


def stacked_upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):
    """rosinality's layout: every channel of every image as its own one-channel image."""
    batch, channels, height, width = input.shape
    out = DEPTHWISE(input.reshape(batch * channels, 1, height, width), kernel, up, down, pad)
    return out.reshape(batch, channels, out.shape[2], out.shape[3])


def iteration(generator, discriminator, real, z_dim, r1: bool) -> None:
    batch = real.shape[0]
    with torch.no_grad():
        fake = generator(torch.randn(batch, z_dim, device=real.device))
    (F.softplus(discriminator(fake)).mean() + F.softplus(-discriminator(real)).mean()).backward()
    if r1:
        leaf = real.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(discriminator(leaf).sum(), leaf, create_graph=True)
        gradient.square().sum().backward()
    F.softplus(-discriminator(generator(torch.randn(batch, z_dim, device=real.device)))).mean().backward()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-channels", type=int, default=32)
    parser.add_argument("--style-dim", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=16)
    parser.add_argument("--r1-every", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    generator = stylegan2.StyleGAN2(args.size, style_dim=args.style_dim, n_mlp=2, max_channels=args.max_channels).to(device)
    discriminator = stylegan2.StyleGAN2Critic(args.size, max_channels=args.max_channels).to(device)
    real = torch.randn(args.batch, 3, args.size, args.size, device=device)
    implementations = {"rosinality's stacked layout": stacked_upfirdn2d, "depthwise (ours)": DEPTHWISE}

    outputs = {}
    for name, function in implementations.items():
        stylegan2.upfirdn2d = function
        generator.zero_grad()
        torch.manual_seed(1)
        ws = torch.randn(2, generator.num_ws, generator.w_dim, device=device)
        image = generator.synthesize(ws)
        discriminator(image).sum().backward()
        outputs[name] = (image.detach(), [p.grad.clone() for p in generator.parameters() if p.grad is not None])
    (image_a, grads_a), (image_b, grads_b) = outputs.values()
    identical = torch.equal(image_a, image_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))

    times = {name: [] for name in implementations}
    for name, function in implementations.items():  # warm-up
        stylegan2.upfirdn2d = function
        iteration(generator, discriminator, real, generator.z_dim, r1=True)
    for _ in range(args.repeats):
        for name, function in implementations.items():
            stylegan2.upfirdn2d = function
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for index in range(args.iterations):
                iteration(generator, discriminator, real, generator.z_dim, r1=index % args.r1_every == 0)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(args.iterations / (time.perf_counter() - started))
    stylegan2.upfirdn2d = DEPTHWISE
    print(f"StyleGAN2 step, {args.size} px, batch {args.batch}, widths <= {args.max_channels}, {device}, "
          f"{torch.get_num_threads()} threads, R1 every {args.r1_every}; {args.repeats} interleaved blocks of {args.iterations}\n")
    print("| FIR filtering | iterations/s (median) | range |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} |")
    ratio = statistics.median(times["depthwise (ours)"]) / statistics.median(times["rosinality's stacked layout"])
    print(f"\nspeed-up {ratio:.2f}x; images and generator gradients identical: {identical}")


if __name__ == "__main__":
    main()
