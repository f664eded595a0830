#!/usr/bin/env python
"""What the entry points' allocator setting buys: `bicycle_reference` training with glibc's
defaults vs with freed memory kept (``bicyclegan_pl.runtime.allocator``), in one run.

Usage (from the repository root)::

    python benchmarks/allocator.py                          # 256 px batch 2 and 128 px batch 8, 3 repeats
    python benchmarks/allocator.py --sizes 128 --batch-sizes 8 --repeats 5

Each (size, allocator, repeat) is one Lightning worker of ``train_throughput.py`` in a fresh
process, the two allocators interleaved (alternating which goes first), so a drift of the
machine's speed hits both alike. Reports images/s, minor page faults and system CPU per
iteration, peak RSS, and whether both ended with bit-identical weights (they must: the setting
changes where memory comes from, not the arithmetic).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_throughput  # noqa: E402  (the worker and its options)

ALLOCATORS = ("glibc", "kept")


def main(argv: list[str] | None = None) -> int:
    args = train_throughput.parse_args(argv)
    started = time.perf_counter()
    results: list[dict] = []
    configs = list(zip(args.sizes, args.batch_sizes))
    runs = [
        (allocator, size, batch_size)
        for repeat in range(args.repeats)
        for size, batch_size in configs
        for allocator in (ALLOCATORS if repeat % 2 == 0 else ALLOCATORS[::-1])
    ]
    for index, (allocator, size, batch_size) in enumerate(runs, 1):
        args.allocator = allocator
        result = train_throughput.run_worker(args, "lightning", size, batch_size)
        results.append(result)
        print(
            f"[{index}/{len(runs)}] {size} px, batch {batch_size}, {allocator:5s}: {result['images_per_s']:.3f} images/s, "
            f"{result['minor_page_faults'] / result['iterations'] / 1e3:.0f}k faults/iter, "
            f"other processes {result['other_cores_busy']:.2f} cores",
            flush=True,
        )
    print()
    print(
        f"bicycle_reference, Lightning path, {results[0]['device']}, {args.threads} threads; {args.warmup} warm-up + "
        f"{args.iterations} timed iterations; median of {args.repeats} interleaved runs"
    )
    print()
    print("| size | batch | allocator | images/s (min-max) | speed-up | minor faults/iter | system CPU s/iter | peak RSS MiB | weights |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for size, batch_size in configs:
        rows = {a: [r for r in results if r["allocator"] == a and r["size"] == size and r["batch_size"] == batch_size] for a in ALLOCATORS}
        speed = {a: statistics.median(r["images_per_s"] for r in rs) for a, rs in rows.items()}
        digests = {r["weights_digest"] for rs in rows.values() for r in rs}
        for allocator, runs_of in rows.items():
            iterations = sum(r["iterations"] for r in runs_of)
            faults = sum(r["minor_page_faults"] for r in runs_of) / iterations
            system = sum(r["system_cpu_seconds"] for r in runs_of) / iterations
            peak = statistics.median(r["rss_peak_mib"] for r in runs_of)
            spread = f"{min(r['images_per_s'] for r in runs_of):.3g}-{max(r['images_per_s'] for r in runs_of):.3g}"
            gain = "" if allocator == "glibc" else f"{100 * (speed['kept'] / speed['glibc'] - 1):+.1f} %"
            same = "identical" if len(digests) == 1 else "DIFFERENT"
            print(
                f"| {size} | {batch_size} | {allocator} | {speed[allocator]:.3f} ({spread}) | {gain} | {faults / 1e3:.0f}k | "
                f"{system:.3f} | {peak:.0f} | {same} |"
            )
    busy = max(r["other_cores_busy"] for r in results)
    if busy > args.max_other_cores:
        print(f"\nWARNING: other processes kept up to {busy:.2f} cores busy: timings are unreliable, re-run on an idle machine")
    print(f"\ntotal runtime: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
