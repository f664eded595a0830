#!/usr/bin/env python
"""GPU memory of one CLIPTraVeLGAN training iteration, estimated on any machine.

Usage (from the repository root)::

    python benchmarks/travelgan_memory.py                          # ViT-L/14, 256 px U-Net, 80 GB, ~2 min on 2 cores
    python benchmarks/travelgan_memory.py --gpu-gib 40 --batch 64  # another card, another target batch
    python benchmarks/travelgan_memory.py --clip openai/clip-vit-base-patch32   # any CLIP id or folder (config only)

We have no GPU, so the estimate is built from two things that do not need one:

- the resident state, counted exactly: fp32 weights of G, D and the frozen CLIP, G's and D's
  gradients and Adam's two moments;
- what autograd keeps from the generator phase's forward pass until its backward pass (the
  peak of an iteration: G's graph, D's graph on G(x) for the GAN term, and CLIP's graph on G(x)
  for the TraVeL term; CLIP on the real x has no graph), counted with saved-tensor hooks
  (``benchmarks/memory.py``) on the CPU at two batch sizes and extrapolated linearly
  (activations grow linearly with the batch; the intercept is what does not, such as autocast's
  bf16 copies of the weights).

The nets are the ones ``+experiment=cliptravelgan_monet`` builds (U-Net 256 px, ngf 64; PatchGAN
ndf 64); CLIP gets random weights of the architecture of ``--clip`` (default ViT-L/14, the
paper's), which use the same memory as the pretrained ones. Attention runs through PyTorch's
scaled-dot-product kernel (transformers' default, on the CPU the flash kernel, which like the
GPU's saves no B x heads x 257 x 257 attention matrix); ``--attention eager`` shows the cost
of the matrix. Not counted: cuDNN workspaces, the caching allocator's fragmentation and
transient buffers, hence the ``--usable`` fraction of the card.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.memory import count_saved_activations  # noqa: E402

GIB = 1024**3
VIT_L_14 = dict(  # openai/clip-vit-large-patch14's vision tower
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    image_size=224, patch_size=14, projection_dim=768,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=None, help="CLIP id or folder whose vision config to use (default: ViT-L/14 built in)")
    parser.add_argument("--image-size", type=int, default=256, help="generator resolution (the paper: 256)")
    parser.add_argument("--batch", type=int, default=128, help="the batch to judge (the paper: 128)")
    parser.add_argument("--gpu-gib", type=float, default=80.0, help="GPU memory in GiB (H100/A100 80 GB: 80)")
    parser.add_argument("--usable", type=float, default=0.9, help="fraction of the card left after allocator overhead")
    parser.add_argument("--chunk", type=int, default=16, help="chunk_size of the checkpointed CLIP encoding")
    parser.add_argument("--attention", choices=("sdpa", "eager"), default="sdpa")
    parser.add_argument("--probe-batches", default="1,2", help="two small batches measured on the CPU")
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args(argv)


def build_nets(image_size: int) -> tuple[nn.Module, nn.Module]:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from bicyclegan_pl.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=[
            "+experiment=cliptravelgan_monet", f"data.crop_size={image_size}", f"data.load_size={image_size}",
        ])
    generator = instantiate(cfg.model.generator)(input_nc=3, output_nc=3, nz=0)
    discriminator = instantiate(cfg.model.discriminator)(input_nc=3)
    return generator, discriminator


def build_clip(source: str | None, attention: str) -> tuple[nn.Module, int]:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig.from_pretrained(source) if source else CLIPVisionConfig(**VIT_L_14)
    config._attn_implementation = attention
    torch.manual_seed(0)
    model = CLIPVisionModel(config).eval().requires_grad_(False)
    return model, config.image_size


def generator_phase(generator: nn.Module, discriminator: nn.Module, clip_embed: nn.Module, batch: int, image_size: int, precision: str) -> int:
    """Saved bytes of the generator phase's forward (TravelGAN's `gan` and `travel` terms)."""
    real = torch.rand(batch, 3, image_size, image_size) * 2 - 1
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    with autocast, count_saved_activations([generator, discriminator, clip_embed]) as saved:
        fake = generator(real)
        logits = discriminator(fake)
        with torch.no_grad():
            source = clip_embed(real)
        translated = clip_embed(fake)
        loss = logits.float().mean() + (translated.float() - source.float()).pow(2).mean()
    loss.backward()
    generator.zero_grad(set_to_none=True)
    return saved.bytes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from bicyclegan_pl.clip.preprocess import ClipPreprocess
    from bicyclegan_pl.clip.siamese import ClipImageEmbedder

    started = time.perf_counter()
    generator, discriminator = build_nets(args.image_size)
    vision, resolution = build_clip(args.clip, args.attention)
    preprocess = ClipPreprocess(resize=None, crop=resolution)  # the paper: the centre 224 of the 256 px output

    def count(net: nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    g_params, d_params, clip_params = count(generator), count(discriminator), count(vision)
    # fp32 weights; G and D also hold a gradient and Adam's exp_avg and exp_avg_sq
    resident = 4 * clip_params + 16 * (g_params + d_params)
    budget = args.usable * args.gpu_gib * GIB
    small, large = (int(v) for v in args.probe_batches.split(","))

    def per_image_and_fixed(embedder: nn.Module, precision: str) -> tuple[float, float]:
        low, high = (generator_phase(generator, discriminator, embedder, b, args.image_size, precision) for b in (small, large))
        per_image = (high - low) / (large - small)
        return per_image, low - per_image * small

    rows = []
    for precision in ("fp32", "bf16"):
        plain = ClipImageEmbedder(vision, preprocess)
        recomputed = ClipImageEmbedder(vision, preprocess, chunk_size=args.chunk, checkpoint=True)
        per_image, fixed = per_image_and_fixed(plain, precision)
        per_image_ckpt, fixed_ckpt = per_image_and_fixed(recomputed, precision)
        # the checkpointed encoding rebuilds one chunk's CLIP graph at a time in the backward pass
        transient = (per_image - per_image_ckpt) * args.chunk
        for label, slope, intercept, extra in (
            ("as is", per_image, fixed, 0.0),
            (f"checkpoint, chunk_size {args.chunk}", per_image_ckpt, fixed_ckpt, transient),
        ):
            total = resident + intercept + extra + slope * args.batch
            fits = math.floor((budget - resident - intercept - extra) / slope)
            rows.append((precision, label, slope, resident + intercept, extra, total, fits))

    clip_name = "ViT-L/14" if args.clip is None else args.clip
    print(f"# CLIPTraVeLGAN generator-phase memory at {args.image_size} px ({clip_name}, attention {args.attention})\n")
    print(f"parameters: G {g_params / 1e6:.1f} M, D {d_params / 1e6:.2f} M, CLIP vision {clip_params / 1e6:.1f} M (frozen); "
          f"weights + G/D gradients + Adam moments: {resident / GIB:.2f} GiB\n")
    print(f"| precision | CLIP encoding | per image (GiB) | fixed (GiB) | chunk recompute (GiB) | batch {args.batch} (GiB) "
          f"| largest batch in {args.usable:.0%} of {args.gpu_gib:g} GiB |")
    print("|---|---|---|---|---|---|---|")
    for precision, label, slope, fixed, extra, total, fits in rows:
        print(f"| {precision} | {label} | {slope / GIB:.3f} | {fixed / GIB:.2f} | {extra / GIB:.2f} | {total / GIB:.1f} | {fits} |")
    print(f"\n({time.perf_counter() - started:.0f} s; probe batches {small} and {large} on the CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
