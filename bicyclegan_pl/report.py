"""Summarise a multirun: ``python -m bicyclegan_pl.report <multirun dir> [--out DIR]``.

Reads each job's CSV log (``<job>/csv/metrics.csv``) and Hydra overrides, prints a markdown
table of the final metrics per job and writes ``report.md`` and ``report.png`` (loss curves
per job, one panel per loss term) into the multirun folder.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class JobLog:
    """One job of a multirun: its overrides and its logged series."""

    path: Path
    overrides: list[str]
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def final(self, key: str) -> float | None:
        points = self.series.get(key)
        return points[-1][1] if points else None

    @property
    def label(self) -> str:
        return " ".join(self.overrides) or self.path.name


def read_job(job_dir: Path) -> JobLog | None:
    metrics_file = job_dir / "csv" / "metrics.csv"
    if not metrics_file.is_file():
        return None
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    job = JobLog(path=job_dir, overrides=[str(o) for o in overrides or []])
    with metrics_file.open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                try:
                    number = float(value)
                except ValueError:
                    continue
                job.series.setdefault(key, []).append((step, number))
    return job


def find_jobs(root: Path) -> list[JobLog]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the multirun folder (multirun/<name>/<time>)")
    jobs = [job for metrics in sorted(root.rglob("csv/metrics.csv")) if (job := read_job(metrics.parent.parent))]
    if not jobs:
        raise FileNotFoundError(f"no job under {root} has a csv/metrics.csv log (was the csv logger enabled?)")
    return sorted(jobs, key=lambda j: (len(j.path.name), j.path.name))


def summary_columns(jobs: list[JobLog]) -> list[str]:
    """Validation metrics and per-epoch training means (the ones comparable between jobs)."""
    keys = {k for job in jobs for k in job.series}
    return sorted(k for k in keys if k.startswith("val/")) + sorted(
        k for k in keys if k.startswith("train/") and k.endswith("_epoch")
    )


def _format(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4g}"


def markdown_table(jobs: list[JobLog]) -> str:
    columns = summary_columns(jobs)
    lines = ["| job | overrides | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for job in jobs:
        values = " | ".join(_format(job.final(c)) for c in columns)
        lines.append(f"| {job.path.name} | {' '.join(job.overrides)} | {values} |")
    return "\n".join(lines)


def plot_losses(jobs: list[JobLog], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for job in jobs for k in job.series if k.startswith("train/") and k.endswith("_step")})
    if not keys:
        keys = sorted({k for job in jobs for k in job.series if k.startswith("train/")})
    columns = min(3, max(1, len(keys)))
    rows = max(1, math.ceil(len(keys) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows), squeeze=False)
    for axis, key in zip(axes.flat, keys):
        for job in jobs:
            points = job.series.get(key)
            if points:
                axis.plot([p[0] for p in points], [p[1] for p in points], label=job.label, linewidth=1)
        axis.set_title(key.removeprefix("train/").removesuffix("_step"))
        axis.set_xlabel("iteration")
    for axis in list(axes.flat)[len(keys) :]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 2), fontsize="small")
    figure.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 2), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="where to write report.md/png (default: the multirun dir)")
    args = parser.parse_args(argv)
    try:
        jobs = find_jobs(args.multirun_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.multirun_dir
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(jobs)
    (out / "report.md").write_text(table + "\n")
    plot_losses(jobs, out / "report.png")
    print(table)
    print(f"\nwrote {out / 'report.md'} and {out / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
