"""Summarise multiruns: ``python -m bicyclegan_pl.report <multirun dir>... [--group-by KEY] [--out DIR]``.

Reads each job's CSV log (``<job>/csv/metrics.csv``), Hydra overrides and, when present, its
evaluation (``<job>/eval/<--eval>/metrics.json`` from ``python -m bicyclegan_pl.evaluate``) or,
for a multirun of ``guide val_inputs=N``, its ``text_control.json`` (``eval/text_best`` ...),
prints a markdown table of the final metrics per job and writes ``report.md`` and ``report.png``
(loss curves, one panel per loss term). With ``--group-by +experiment`` jobs that differ only
in other overrides (seeds) are aggregated: mean ± std per variant, and mean curves; adding
``--baseline NAME`` compares every other variant with that one, metric by metric (``--compare``):
the difference of means with its 95 % interval and the p-value of Welch's two-sample t-test, so
a sentence "X beats Y" can cite an interval rather than two means.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
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
    evaluation: dict[str, float] = field(default_factory=dict)

    def final(self, key: str) -> float | None:
        if key in self.evaluation:
            return self.evaluation[key]
        points = self.series.get(key)
        return points[-1][1] if points else None

    def override(self, key: str) -> str | None:
        """The value ``key`` was given; the last one when it was given twice (Hydra applies overrides in order)."""
        for override in reversed(self.overrides):
            name, _, value = override.partition("=")
            if name == key:
                return value
        return None

    @property
    def label(self) -> str:
        return " ".join(self.overrides) or self.path.name


def read_evaluation(job_dir: Path, name: str) -> dict[str, float]:
    path = job_dir / "eval" / name / "metrics.json"
    if not path.is_file():
        return {}
    evaluation = json.loads(path.read_text())
    values = {f"eval/{key}": float(value) for key, value in evaluation.get("metrics", {}).items()}
    # the checkpoint's training iteration: runs compared in one table should have the same
    if "iteration" in evaluation:
        values["eval/iteration"] = float(evaluation["iteration"])
    return values


def read_text_control(job_dir: Path) -> dict[str, float]:
    """A guide job's ``text_control.json`` (``guide val_inputs=N``) as evaluation values, averaged
    over its colour prompts: ``eval/text_best`` (the best output shows the named colour),
    ``eval/text_top_k``, ``eval/text_random_z`` and ``eval/text_chance``."""
    path = job_dir / "text_control.json"
    if not path.is_file():
        return {}
    rows = [row for row in json.loads(path.read_text())["prompts"] if "top1" in row]
    if not rows:
        return {}
    columns = {"text_best": "top1", "text_top_k": "top_k", "text_random_z": "random_z", "text_chance": "chance"}
    return {f"eval/{name}": statistics.mean(row[key] for row in rows) for name, key in columns.items()}


def read_job(job_dir: Path, evaluation: str = "last-val") -> JobLog | None:
    """A training job (``csv/metrics.csv``, plus its evaluation) or a guide job (``text_control.json``)."""
    metrics_file = job_dir / "csv" / "metrics.csv"
    text_control = read_text_control(job_dir)
    if not metrics_file.is_file() and not text_control:
        return None
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    job = JobLog(
        path=job_dir, overrides=[str(o) for o in overrides or []],
        evaluation={**read_evaluation(job_dir, evaluation), **text_control},
    )
    if not metrics_file.is_file():
        return job
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


def find_jobs(root: Path, evaluation: str = "last-val") -> list[JobLog]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the multirun folder (multirun/<name>/<time>)")
    folders = {metrics.parent.parent for metrics in root.rglob("csv/metrics.csv")}
    folders |= {found.parent for found in root.rglob("text_control.json")}
    jobs = [job for folder in sorted(folders) if (job := read_job(folder, evaluation))]
    if not jobs:
        raise FileNotFoundError(
            f"no job under {root} has a csv/metrics.csv log (was the csv logger enabled?) or a guide text_control.json"
        )
    return sorted(jobs, key=lambda j: (len(j.path.name), j.path.name))


def group_jobs(jobs: list[JobLog], key: str) -> dict[str, list[JobLog]]:
    """Jobs by the value of one override (in order of first appearance); ``key`` may list several,
    ``method,rank.num_samples``: a group is then named ``method=rank rank.num_samples=8``."""
    keys = key.split(",")
    groups: dict[str, list[JobLog]] = {}
    for job in jobs:
        if len(keys) == 1:
            name = job.override(key) or "(default)"
        else:
            name = " ".join(f"{k}={value}" for k in keys if (value := job.override(k)) is not None) or "(default)"
        groups.setdefault(name, []).append(job)
    return groups


def grouped_table(groups: dict[str, list[JobLog]], key: str) -> str:
    """Mean ± std over the jobs of each group for the evaluation and validation metrics."""
    keys = {k for jobs in groups.values() for job in jobs for k in [*job.series, *job.evaluation]}
    # a run's own error bars (KID/IS std over subsets, LPIPS stderr over inputs) stay in the
    # per-job table: here the spread that matters is the one over the group's runs
    keys = {k for k in keys if not _is_within_run_error(k)}
    columns = sorted(k for k in keys if k.startswith("eval/")) + sorted(k for k in keys if k.startswith("val/"))
    # short names (fid, recon_l1) unless a metric is both evaluated and validated (eval/fid, val/fid)
    short = [c.split("/", 1)[1] for c in columns]
    header = [key, "runs", *(name if short.count(name) == 1 else column for name, column in zip(short, columns))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, jobs in groups.items():
        cells = [name, str(len(jobs))]
        for column in columns:
            values = [v for job in jobs if (v := job.final(column)) is not None and not math.isnan(v)]
            if not values:
                cells.append("")
            elif len(values) == 1:
                cells.append(f"{values[0]:.4g}")
            else:
                cells.append(f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the synthetic data's ground-truth metrics, the primary measures of the seed 000 study
DEFAULT_COMPARED = ("val/mode_coverage", "val/mode_kl", "val/mask_iou", "val/encoded_accuracy")


def _final_values(jobs: list[JobLog], key: str) -> list[float]:
    return [v for job in jobs if (v := job.final(key)) is not None and not math.isnan(v)]


def comparison_table(groups: dict[str, list[JobLog]], baseline: str, keys: list[str]) -> str:
    """Each group against ``baseline``: difference of means (group − baseline), its 95 % Welch
    interval and the two-sided p-value of Welch's t-test (unequal variances), per metric."""
    from scipy import stats

    if baseline not in groups:
        raise KeyError(f"--baseline {baseline!r} is not one of the groups: {', '.join(groups)}")
    lines = [
        f"| variant | metric | runs | mean | {baseline} mean | difference (95 % CI) | Welch p |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, jobs in groups.items():
        if name == baseline:
            continue
        for key in keys:
            ours, theirs = _final_values(jobs, key), _final_values(groups[baseline], key)
            if len(ours) < 2 or len(theirs) < 2:
                continue  # no spread to test against
            difference = statistics.mean(ours) - statistics.mean(theirs)
            if statistics.pvariance(ours) == 0 and statistics.pvariance(theirs) == 0:
                interval, p_value = f"{difference:.3g} (no spread)", ("1" if difference == 0 else "0")
            else:
                test = stats.ttest_ind(ours, theirs, equal_var=False)
                low, high = test.confidence_interval(0.95)
                interval, p_value = f"{difference:+.3g} [{low:+.3g}, {high:+.3g}]", f"{test.pvalue:.3g}"
            lines.append(
                f"| {name} | {key.split('/', 1)[-1]} | {len(ours)} vs {len(theirs)} | {statistics.mean(ours):.4g} "
                f"| {statistics.mean(theirs):.4g} | {interval} | {p_value} |"
            )
    return "\n".join(lines)


def _is_within_run_error(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return "_std" in name or name.endswith("_stderr")


def summary_columns(jobs: list[JobLog]) -> list[str]:
    """Evaluation and validation metrics and per-epoch training means (comparable between jobs)."""
    keys = {k for job in jobs for k in [*job.series, *job.evaluation]}
    return sorted(k for k in keys if k.startswith("eval/")) + sorted(k for k in keys if k.startswith("val/")) + sorted(
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


def _mean_curve(jobs: list[JobLog], key: str) -> tuple[list[int], list[float]]:
    """Mean over jobs at the steps all of them logged."""
    by_step: dict[int, list[float]] = {}
    for job in jobs:
        for step, value in job.series.get(key, []):
            by_step.setdefault(step, []).append(value)
    steps = sorted(step for step, values in by_step.items() if len(values) == len(jobs))
    return steps, [statistics.mean(by_step[step]) for step in steps]


def _smooth(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return values
    smoothed, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        smoothed.append(total / min(index + 1, window))
    return smoothed


def plot_losses(jobs: list[JobLog], path: Path, groups: dict[str, list[JobLog]] | None = None, smooth: int = 1) -> None:
    """One panel per training loss; one line per job, or per group (the mean over its jobs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for job in jobs for k in job.series if k.startswith("train/") and k.endswith("_step")})
    if not keys:
        keys = sorted({k for job in jobs for k in job.series if k.startswith("train/")})
    lines = groups if groups is not None else {job.label: [job] for job in jobs}
    columns = min(3, max(1, len(keys)))
    rows = max(1, math.ceil(len(keys) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows), squeeze=False)
    for axis, key in zip(axes.flat, keys):
        for label, members in lines.items():
            steps, values = _mean_curve(members, key)
            if steps:
                axis.plot(steps, _smooth(values, smooth), label=label, linewidth=1)
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
    parser.add_argument("multirun_dirs", type=Path, nargs="+", help="one or more multirun folders")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.md/png (default: the first multirun dir)")
    parser.add_argument(
        "--group-by", default=None,
        help="an override key, e.g. +experiment, or several comma-separated: mean ± std over the other overrides",
    )
    parser.add_argument("--eval", default="last-val", help="which <job>/eval/<name>/metrics.json to include (default last-val)")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average window (logged points) for the curves")
    parser.add_argument("--baseline", default=None, help="with --group-by: compare every group with this one (Welch's t-test)")
    parser.add_argument(
        "--compare", nargs="+", default=list(DEFAULT_COMPARED), help="metrics compared with --baseline (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.baseline and not args.group_by:
        print("error: --baseline needs --group-by (the override whose values are the groups)", file=sys.stderr)
        return 2
    try:
        jobs = [job for folder in args.multirun_dirs for job in find_jobs(folder, args.eval)]
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.multirun_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    groups = group_jobs(jobs, args.group_by) if args.group_by else None
    table = markdown_table(jobs)
    if groups is not None:
        comparison = ""
        if args.baseline:
            try:
                comparison = "\n\nAgainst the baseline:\n\n" + comparison_table(groups, args.baseline, args.compare)
            except KeyError as error:
                print(f"error: {error.args[0]}", file=sys.stderr)
                return 2
        table = grouped_table(groups, args.group_by) + comparison + "\n\nPer job:\n\n" + table
    (out / "report.md").write_text(table + "\n")
    print(table)
    if any(job.series for job in jobs):
        plot_losses(jobs, out / "report.png", groups, args.smooth)
        print(f"\nwrote {out / 'report.md'} and {out / 'report.png'}")
    else:  # guide jobs: no training curves
        print(f"\nwrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
