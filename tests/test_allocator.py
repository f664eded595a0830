"""The entry points' allocator setting: glibc reuses freed memory instead of faulting it back in."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from bicyclegan_pl.runtime.allocator import SETTINGS, keep_freed_memory

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc's"
)

# A few training-like iterations (conv forward + backward, buffers freed and re-allocated every
# time); prints the minor page faults per iteration after a warm-up.
FAULTS_PER_ITERATION = """
import resource, sys, torch
from bicyclegan_pl.runtime.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
torch.manual_seed(0)
torch.set_num_threads(1)
net = torch.nn.Sequential(*[torch.nn.Conv2d(32, 32, 3, padding=1) for _ in range(4)])
x = torch.randn(8, 32, 64, 64)
def step():
    net(x).square().mean().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults(mode: str) -> float:
    env = {key: value for key, value in __import__("os").environ.items() if not key.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_ITERATION, mode], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.split()[-1])


@glibc_only
def test_keeping_freed_memory_removes_most_page_faults_of_an_iteration():
    default, kept = _faults("default"), _faults("keep")
    print(f"minor page faults per iteration: default {default:.0f}, kept {kept:.0f}")
    assert kept < default / 5


@glibc_only
def test_a_malloc_variable_the_user_set_wins():
    applied = keep_freed_memory({"MALLOC_TOP_PAD_": "0"})
    assert set(applied) == set(SETTINGS) - {"MALLOC_TOP_PAD_"}
    assert applied["MALLOC_MMAP_THRESHOLD_"] == 32 * 1024 * 1024
