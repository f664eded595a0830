"""The report command on hand-made job folders: evaluation metrics and grouping over seeds."""
from __future__ import annotations

import json

import yaml

from bicyclegan_pl.report import main


def _job(folder, overrides, losses, fid):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "csv").mkdir()
    rows = ["step,epoch,train/vae_l1_step,val/recon_l1"] + [f"{10 * i},0,{value},{value / 2}" for i, value in enumerate(losses)]
    (folder / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    (folder / "eval" / "last-val").mkdir(parents=True)
    (folder / "eval" / "last-val" / "metrics.json").write_text(
        json.dumps({"metrics": {"fid": fid, "mode_coverage": 0.5, "kid_mean": 0.1, "kid_std": 0.01}, "iteration": 20})
    )


def test_report_groups_seeds_into_mean_and_std_and_includes_evaluations(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    _job(sweep / "0", ["+experiment=a", "seed=0"], [1.0, 0.8], fid=10.0)
    _job(sweep / "1", ["+experiment=a", "seed=1"], [1.0, 0.6], fid=14.0)
    _job(sweep / "2", ["+experiment=b", "seed=0"], [1.0, 0.4], fid=20.0)
    assert main([str(sweep), "--group-by", "+experiment", "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    lines = [line for line in report.splitlines() if line.startswith("| a |") or line.startswith("| b |")]
    # fid: mean 12 ± std 2.8 (sample std of 10 and 14); recon_l1 final: 0.4 and 0.3 -> 0.35
    # a run's own error bar (kid_std) is left out of the grouped table, kept per job
    assert lines[0] == "| a | 2 | 12 ± 2.8 | 20 ± 0 | 0.1 ± 0 | 0.5 ± 0 | 0.35 ± 0.071 |"
    assert lines[1] == "| b | 1 | 20 | 20 | 0.1 | 0.5 | 0.2 |"
    assert report.splitlines()[0] == "| +experiment | runs | fid | iteration | kid_mean | mode_coverage | recon_l1 |"
    per_job = report.split("Per job:")[1]
    assert "eval/kid_std" in per_job.splitlines()[2] and "| 0.01 |" in per_job
    assert (tmp_path / "out" / "report.png").stat().st_size > 5_000


def test_baseline_comparison_gives_welch_interval_and_p_value(tmp_path):
    from scipy import stats

    sweep = tmp_path / "sweep"
    a, b = [10.0, 12.0, 14.0], [20.0, 21.0, 25.0]
    for index, fid in enumerate(a):
        _job(sweep / str(index), ["+experiment=a", f"seed={index}"], [1.0, 0.5], fid=fid)
    for index, fid in enumerate(b):
        _job(sweep / str(3 + index), ["+experiment=b", f"seed={index}"], [1.0, 0.5], fid=fid)
    arguments = [str(sweep), "--group-by", "+experiment", "--out", str(tmp_path / "out"), "--baseline", "a"]
    assert main([*arguments, "--compare", "eval/fid"]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    [row] = [line for line in report.splitlines() if line.startswith("| b | fid |")]
    expected = stats.ttest_ind(b, a, equal_var=False)
    low, high = expected.confidence_interval(0.95)
    assert f"+10 [{low:+.3g}, {high:+.3g}]" in row  # difference of means 22 - 12, with Welch's interval
    assert row.endswith(f"| {expected.pvalue:.3g} |") and 0 < low < 10 < high
    assert "| a | fid |" not in report  # the baseline is not compared with itself
    assert main([*arguments[:-1], "nope"]) == 2  # an unknown baseline is a message, not a traceback
    assert main([str(sweep), "--baseline", "a"]) == 2  # needs --group-by


def test_a_key_given_twice_groups_by_its_last_value_as_hydra_applies_it(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep / "0", ["model.g=dcgan", "seed=0"], [1.0, 0.5], fid=10.0)
    _job(sweep / "1", ["model.g=dcgan", "seed=0", "model.g=stylegan2"], [1.0, 0.5], fid=30.0)
    assert main([str(sweep), "--group-by", "model.g", "--out", str(tmp_path / "out")]) == 0
    rows = [line for line in (tmp_path / "out" / "report.md").read_text().splitlines() if line.startswith("| dcgan |") or line.startswith("| stylegan2 |")]
    assert [row.split(" | ")[:3] for row in rows] == [["| dcgan", "1", "10"], ["| stylegan2", "1", "30"]]
