"""The project's commands (`python -m bicyclegan_pl.<module>`) run as a user runs them, for the
command-line tests: tiny settings that keep a run to seconds, and the runner.

A child process inherits the test session's environment, which the ``offline_environment``
fixture of conftest.py (used by every test) makes offline, with a per-session cache."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINY = [
    "model.generator.ngf=8",
    "model.encoder.nef=8",
    "model.encoder.n_blocks=3",
    "model.discriminator.ndf=8",
    "model.discriminator.n_layers=2",
    "data.crop_size=32",
    "data.train_size=8",
    "data.val_size=8",
    "data.batch_size=4",
    "callbacks.sample_grid.num_inputs=4",
    "callbacks.sample_grid.num_samples=3",
    "trainer.log_every_n_steps=1",
    # metrics after the last epoch with the fast conv features; LPIPS weights are absent here
    "metrics/feature_extractor=conv",
    "metrics.lpips.allow_download=false",
]


def run_train(*args: str, module: str = "bicyclegan_pl.train", timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` from the repository root; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
