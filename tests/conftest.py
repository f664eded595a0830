"""Fixtures shared by test modules.

``slurm_cluster``: a real one-node Slurm cluster on this machine (munged, slurmctld, slurmd on
localhost), started by ``.ci/slurm-cluster`` the first time a test asks for it and left running
afterwards (the next session finds it up in a fraction of a second). Tests that use it carry the
``slurm`` marker; they are part of ``make test`` and CI, so a cluster that cannot start is a
failure with the script's output, never a skip (deselect them by hand with ``-m 'not slurm'``).
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / ".ci" / "slurm-cluster"
SLURM_PARTITION = "local"  # the partition the script creates


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
