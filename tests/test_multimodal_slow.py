"""Slow: the main job (`make train`, the defaults) shows every mode, for three seeds.

Each run is exactly `python -m bicyclegan_pl.train seed=S` (10 minutes at most on 2 idle cores);
the numbers it must reach are measured from the synthetic data's ground truth by the metrics
callback after the last epoch: mode coverage (the fraction of the 4 appearances among 20
random-z samples per validation input, only recognisable appearances counted), the encoded
accuracy (G(A, E(B)) in the target's own colour) and the off-palette fraction.
"""
from __future__ import annotations

import csv
import time

import pytest

from tests.cli import run_train


def final_validation_metrics(run_dir) -> dict[str, float]:
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    found: dict[str, float] = {}
    for row in rows:  # the last logged value of each metric
        found.update({key: float(value) for key, value in row.items() if key.startswith("val/") and value})
    return found


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_main_job_shows_every_mode_and_reconstructs_the_right_colour(tmp_path, seed):
    started = time.monotonic()
    # exactly `make train` (CSV and an offline W&B run), in a folder of the test's own
    result = run_train(f"seed={seed}", f"hydra.run.dir={tmp_path}", timeout=1800)
    minutes = (time.monotonic() - started) / 60
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = final_validation_metrics(tmp_path)
    print(
        f"seed {seed}: {minutes:.1f} min; mode coverage {metrics['val/mode_coverage']:.3f}, encoded accuracy "
        f"{metrics['val/encoded_accuracy']:.3f}, off-palette {metrics['val/off_palette']:.3f}, "
        f"mode KL {metrics['val/mode_kl']:.3f}, mask IoU {metrics['val/mask_iou']:.3f}"
    )
    assert metrics["val/mode_coverage"] >= 0.9, "random z should produce every appearance for almost every input"
    assert metrics["val/encoded_accuracy"] >= 0.9, "G(A, E(B)) should show the target's own colour"
    assert metrics["val/off_palette"] <= 0.1, "samples should show an appearance, not noise"
