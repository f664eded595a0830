"""Aggregate `compare` runs of one task over seeds: ``python summarise.py <task>/compare`` prints markdown.

Reads ``<folder>/seed*/compare.json``. The trained methods (:data:`TRAINED`) get mean ± std over
seeds; the others (Gatys from the content start, the unchanged input) are deterministic and take
seed 0's run.
Each trained method is compared with every other method, metric by metric: the difference of means
with its 95 % interval and p-value (Welch's t-test against another trained method; a one-sample
t-test against a fixed value).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from scipy import stats

TRAINED = ("cyclegan", "ghiasi")
METRICS = {
    "fid": "FID ↓", "kid_mean": "KID ↓", "style_distance": "Gram distance ↓", "ssim_to_input": "luma SSIM to input ↑",
    "lpips_to_input": "LPIPS to input ↓", "l1_to_truth": "L1 to truth ↓", "psnr_to_truth": "PSNR to truth ↑",
    "seconds_per_image": "s / image",
}


def read(folder: Path) -> dict[str, dict[str, list[float]]]:
    """method -> metric -> values over the seeds that measured it."""
    values: dict[str, dict[str, list[float]]] = {}
    for path in sorted(folder.glob("seed*/compare.json")):
        for method, row in json.loads(path.read_text())["methods"].items():
            for metric, value in row.items():
                seen = values.setdefault(method, {}).setdefault(metric, [])
                if method in TRAINED or not seen:
                    seen.append(float(value))
    return values


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def difference(ours: list[float], theirs: list[float]) -> str:
    mean = statistics.mean(ours) - statistics.mean(theirs)
    if len(theirs) == 1:
        test = stats.ttest_1samp(ours, popmean=theirs[0])
        low, high = (bound - theirs[0] for bound in test.confidence_interval(0.95))
    else:
        test = stats.ttest_ind(ours, theirs, equal_var=False)
        low, high = test.confidence_interval(0.95)
    return f"{mean:+.3g} [{low:+.3g}, {high:+.3g}], p {test.pvalue:.2g}"


def main(folder: Path) -> str:
    values = read(folder)
    if not values:
        raise SystemExit(f"no seed*/compare.json under {folder}")
    metrics = [m for m in METRICS if any(m in row for row in values.values())]
    seeds = {method: len(next(iter(row.values()))) for method, row in values.items()}
    lines = [f"Runs: {', '.join(f'{m} {n}' for m, n in seeds.items())} (seeds; the others are deterministic).", ""]
    lines += ["| method | " + " | ".join(METRICS[m] for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for method, row in values.items():
        label = "input, unchanged" if method == "input" else method
        lines.append(f"| {label} | " + " | ".join(cell(row[m]) if m in row else "" for m in metrics) + " |")
    lines += ["", "Differences (first − second; 95 % interval, p):", ""]
    lines += ["| comparison | " + " | ".join(METRICS[m] for m in metrics if m != "seconds_per_image") + " |"]
    lines.append("|---" * len(metrics) + "|")
    trained = [method for method in TRAINED if method in values]
    for first in trained:
        for second in values:
            if second == first or (second in trained and trained.index(second) < trained.index(first)):
                continue
            cells = [difference(values[first][m], values[second][m]) for m in metrics if m != "seconds_per_image"]
            lines.append(f"| {first} − {second} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(Path(sys.argv[1])), end="")
