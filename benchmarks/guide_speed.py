#!/usr/bin/env python
"""Seconds per prompt of the CLIP guidance (seed 000): ``rank`` and ``optimize``, and the batched
multi-start optimisation against running the same starts one after another.

Usage (from the repository root)::

    python benchmarks/guide_speed.py                        # tiny CLIP, 64 px generator, CPU
    python benchmarks/guide_speed.py --clip openai/clip-vit-base-patch32 --device cuda

The generator is BicycleGAN's U-Net at 64 px with the default widths (ngf 32, z in every block,
random weights: speed does not depend on training). ``--clip`` defaults to a tiny random CLIP
built in a temporary folder (tests/clip_fixtures.py) and loaded through ``load_clip`` like a real
one. Every measurement is repeated ``--repeats`` times; the median is printed. The batched and
the sequential optimisation start from the same codes and end at the same scores (checked).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bicyclegan_pl.clip import ClipScorer, load_clip  # noqa: E402
from bicyclegan_pl.guidance import optimize, rank  # noqa: E402
from bicyclegan_pl.nets.generators import UnetGenerator  # noqa: E402


def timed(function, repeats: int, device: torch.device) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=None, help="CLIP hub id or folder (default: a tiny random CLIP)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--samples", type=int, default=256, help="rank: n")
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--starts", type=int, default=8, help="optimize: K")
    parser.add_argument("--steps", type=int, default=100, help="optimize: T")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as folder:
        if args.clip is None:
            from tests.clip_fixtures import build_tiny_clip

            clip_name = str(build_tiny_clip(Path(folder)))
        else:
            clip_name = args.clip
        clip = load_clip(clip_name, device)
    scorer = ClipScorer(clip, ["a red leather shoe"])
    torch.manual_seed(0)
    network = UnetGenerator(1, 3, nz=8, num_downs=args.size.bit_length() - 1, ngf=args.ngf, use_dropout=True)
    network = network.to(device).eval().requires_grad_(False)
    source = torch.rand(1, 1, args.size, args.size, device=device) * 2 - 1

    def generate(z):
        return network(source.expand(len(z), -1, -1, -1), z)

    starts = torch.randn(args.starts, 8, generator=torch.Generator().manual_seed(1)).to(device)
    rank_s, _ = timed(lambda: rank(generate, scorer, 8, args.samples, args.chunk_size, 4,
                                   torch.Generator().manual_seed(0), device), args.repeats, device)
    batched_s, batched = timed(lambda: optimize(generate, scorer, starts, steps=args.steps), args.repeats, device)
    sequential_s, alone = timed(
        lambda: [optimize(generate, scorer, starts[i : i + 1], steps=args.steps) for i in range(args.starts)],
        args.repeats, device,
    )
    final_batched = batched.trajectories[0, -1]
    final_alone = torch.stack([result.trajectories[0, -1, 0] for result in alone])
    difference = float((final_batched - final_alone).abs().max())

    print(f"CLIP {clip_name if args.clip else 'tiny random (tests/clip_fixtures.py)'}, generator U-Net {args.size} px "
          f"ngf {args.ngf}, device {device}, torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print("| what | seconds per prompt |")
    print("|---|---|")
    print(f"| rank, n={args.samples} (chunks of {args.chunk_size}) | {rank_s:.2f} |")
    print(f"| optimize, K={args.starts} starts in one batch, T={args.steps} | {batched_s:.2f} |")
    print(f"| optimize, the same K={args.starts} starts one after another | {sequential_s:.2f} |")
    print(f"batched is {sequential_s / batched_s:.2f}x faster than sequential; final scores differ by at most "
          f"{difference:.1e} (float rounding of batched vs single kernels, compounded over {args.steps} Adam steps)")


if __name__ == "__main__":
    main()
