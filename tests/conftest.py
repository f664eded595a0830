"""Fixtures shared by test modules (no test module imports another; plain helpers live in
tests/helpers.py, tests/cli.py, tests/interruption.py, tests/clip_fixtures.py, tests/metric_fixtures.py).

``offline_environment`` (every test, once per session): no network and no shared state. The
Hugging Face hub and W&B are offline (W&B runs land in the run folder, as `logger.wandb.offline`
does), and ``BICYCLEGAN_CACHE`` (real-image statistics, dataset scans) is a folder of this
session, ``bicyclegan_cache``, never the user's ~/.cache. Commands started by the tests
(tests/cli.py) inherit it.

``tiny_checkpoint``: a tiny BicycleGAN trained for one epoch, for the commands that load one.

``tiny_clip_dir``: a tiny random CLIP saved as a downloaded one is (config, weights, tokenizer,
preprocessor), built once per session, loaded through ``load_clip`` like the real one.

``slurm_cluster``: a real one-node Slurm cluster on this machine (munged, slurmctld, slurmd on
localhost), started by ``.ci/slurm-cluster`` the first time a test asks for it and left running
afterwards (the next session finds it up in a fraction of a second). Tests that use it carry the
``slurm`` marker; they are part of ``make test`` and CI, so a cluster that cannot start is a
failure with the script's output, never a skip (deselect them by hand with ``-m 'not slurm'``).
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import TINY, run_train
from tests.clip_fixtures import build_tiny_clip

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / ".ci" / "slurm-cluster"
SLURM_PARTITION = "local"  # the partition the script creates
OFFLINE = {
    "HF_HUB_OFFLINE": "1",  # also read by bicyclegan_pl.clip.load_clip: never download a CLIP
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",  # even with logger.wandb.offline=false
    "WANDB_SILENT": "true",
}


@pytest.fixture(scope="session")
def bicyclegan_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``paths.cache_dir`` of every run of this session (``$BICYCLEGAN_CACHE``)."""
    return tmp_path_factory.mktemp("bicyclegan_cache")


@pytest.fixture(scope="session", autouse=True)
def offline_environment(bicyclegan_cache: Path) -> Iterator[dict[str, str]]:
    """Sets the offline variables and the session's cache for this process and its children."""
    variables = {**OFFLINE, "BICYCLEGAN_CACHE": str(bicyclegan_cache)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in variables.items():
            patch.setenv(name, value)
        yield variables


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BicycleGAN checkpoint of one tiny epoch on the synthetic data (the guide's tests); commands
    that use it write their outputs elsewhere (out_dir)."""
    run_dir = tmp_path_factory.mktemp("tiny_bicyclegan") / "run"
    result = run_train(*TINY, "trainer.max_epochs=1", "logger=csv", "callbacks.metrics=null", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Starts the cluster (installs slurm + munge on first use, as root) and returns its partition."""
    started = time.monotonic()
    command = ["bash", str(CLUSTER_SCRIPT), "start"]
    try:  # a first start installs packages: minutes on a slow mirror, seconds here
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{CLUSTER_SCRIPT} start did not finish in {error.timeout} s:\n{error.output}\n{error.stderr}", pytrace=False)
    output = f"{result.stdout}{result.stderr}"
    if result.returncode != 0:
        message = f"the Slurm test cluster did not start ({CLUSTER_SCRIPT} start, exit {result.returncode}):\n{output}"
        pytest.fail(message, pytrace=False)
    print(f"{output}(cluster ready after {time.monotonic() - started:.1f} s)")
    return SLURM_PARTITION
