"""Interrupting real training processes (`python -m bicyclegan_pl.train`): SIGKILL, SIGTERM,
SIGINT and SIGUSR1 in the middle of an epoch, then resuming; the run-folder guards.

Each run is slowed down by `tests.interruption.Throttle` (0.3 s per iteration) so the test can
act at a known iteration; the throttle also records every iteration a process trained."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cli import REPO, TINY, run_train
from tests.interruption import assert_same_training_state

ITERATIONS_PER_EPOCH = 4  # 16 items, batch 4
EPOCHS = 3
RUN = [
    *[o for o in TINY if not o.startswith(("data.train_size", "data.batch_size"))],
    "data.train_size=16",
    "data.batch_size=4",
    f"trainer.max_epochs={EPOCHS}",
    "callbacks.last_checkpoint.every_n_iterations=3",
    "callbacks.metrics=null",
    "logger=csv",
]


def _throttle(log: Path, seconds: float = 0.3) -> str:
    return f"+callbacks.throttle={{_target_:tests.interruption.Throttle,seconds:{seconds},record:'{log}'}}"


def _start(run_dir: Path, *extra: str, seconds: float = 0.3) -> subprocess.Popen:
    args = [*RUN, _throttle(run_dir.parent / f"{run_dir.name}-iterations.txt", seconds), f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "bicyclegan_pl.train", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _trained(run_dir: Path) -> list[int]:
    return [int(line) for line in (run_dir.parent / f"{run_dir.name}-iterations.txt").read_text().split()]


def _checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def _wait_for_checkpoint(process: subprocess.Popen, run_dir: Path, iteration: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training ended early ({process.returncode}):\n{process.stderr.read()[-3000:]}")
        path = run_dir / "checkpoints" / "last.ckpt"
        if path.exists() and torch.load(path, weights_only=False)["iteration"] >= iteration:
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no checkpoint of iteration {iteration} within {timeout} s")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    process = _start(run_dir, seconds=0.0)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    assert _trained(run_dir) == list(range(1, EPOCHS * ITERATIONS_PER_EPOCH + 1))
    return _checkpoint(run_dir)


def test_killed_in_the_middle_of_an_epoch_resumes_to_the_same_weights(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    process = _start(run_dir)
    _wait_for_checkpoint(process, run_dir, 6)  # every 3 iterations: 6 is batch 2 of epoch 1
    process.kill()
    process.wait()
    assert _checkpoint(run_dir)["iteration"] == 6
    killed_trained = _trained(run_dir)
    assert killed_trained[-1] < 8, "the kill came too late to test a mid-epoch resume"

    resumed = _start(run_dir, seconds=0.0)  # the same command: ckpt_path=auto finds last.ckpt
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    assert "(after iteration 6)" in stdout
    # nothing recomputed but the iterations after the checkpoint
    assert _trained(run_dir)[len(killed_trained):] == list(range(7, EPOCHS * ITERATIONS_PER_EPOCH + 1))
    assert_same_training_state(_checkpoint(run_dir), uninterrupted)


def test_sigterm_saves_after_the_current_iteration_and_exits_nonzero(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    process = _start(run_dir)
    _wait_for_checkpoint(process, run_dir, 3)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    process.send_signal(signal.SIGTERM)  # a second signal while stopping changes nothing
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    stopped_at = _trained(run_dir)[-1]
    assert f"stopped by SIGTERM after iteration {stopped_at}: saved" in stderr
    assert "Traceback" not in stderr
    assert _checkpoint(run_dir)["iteration"] == stopped_at  # saved at the iteration boundary

    resumed = _start(run_dir, "ckpt_path=last", seconds=0.0)
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    assert_same_training_state(_checkpoint(run_dir), uninterrupted)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR1])
def test_sigint_and_sigusr1_save_and_exit_with_the_signal_code(signum, tmp_path):
    run_dir = tmp_path / "run"
    process = _start(run_dir)
    _wait_for_checkpoint(process, run_dir, 3)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-3000:]
    stopped_at = _trained(run_dir)[-1]
    assert _checkpoint(run_dir)["iteration"] == stopped_at < EPOCHS * ITERATIONS_PER_EPOCH
    assert f"stopped by {signal.Signals(signum).name}" in stderr and "Traceback" not in stderr


def test_a_second_run_in_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    run_dir = tmp_path / "run"
    # the first run trains until stopped: however slowly the second starts, the first still runs
    first = _start(run_dir, "trainer.max_epochs=1000")
    _wait_for_checkpoint(first, run_dir, 1)
    second = run_train(*RUN, f"hydra.run.dir={run_dir}")
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"is in use by PID {first.pid} on host" in second.stderr
    assert "Traceback" not in second.stderr


def test_checkpoint_choices_that_cannot_be_resumed_are_one_line_errors(tmp_path):
    empty_run = tmp_path / "empty_run"
    (empty_run / "samples").mkdir(parents=True)
    result = run_train(*RUN, f"hydra.run.dir={empty_run}", "ckpt_path=last")
    assert result.returncode == 2
    assert f"no checkpoints/last.ckpt in {empty_run}" in result.stderr and "samples/" in result.stderr
    for name, content in [("missing.ckpt", None), ("empty.ckpt", b""), ("corrupt.ckpt", b"not a checkpoint")]:
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        result = run_train(*RUN, f"hydra.run.dir={tmp_path / 'run'}", f"ckpt_path={path}")
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(path) in errors[0] and "Traceback" not in result.stderr


def test_a_new_run_does_not_overwrite_a_finished_one(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.joinpath("checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}, "run_config": {}, "iteration": 3}, run_dir / "checkpoints" / "last.ckpt")
    result = run_train(*RUN, f"hydra.run.dir={run_dir}", "ckpt_path=null")
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["iteration"] == 3


def test_a_resumed_run_continues_its_wandb_run(tmp_path):
    run_dir = tmp_path / "run"
    common = [*[o for o in RUN if o != "logger=csv"], "logger=default", f"hydra.run.dir={run_dir}"]
    first = run_train(*common, "trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_train(*common, "trainer.max_epochs=2")
    assert again.returncode == 0, again.stderr[-3000:]
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    offline_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2
    assert all(folder.name.endswith(f"-{run_id}") for folder in offline_runs)


def test_ddp_ranks_stop_together_when_one_is_signalled_and_resume_to_the_same_weights(tmp_path):
    """2 CPU processes (gloo): SIGTERM reaches rank 0 only; both ranks save at the same iteration
    boundary and stop; the resumed run ends where the uninterrupted one does."""
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data.train_size=48", "trainer.max_epochs=2"]
    full_dir = tmp_path / "full"
    full = _start(full_dir, *ddp, seconds=0.0)
    _, stderr = full.communicate(timeout=600)
    assert full.returncode == 0, stderr[-3000:]

    run_dir = tmp_path / "run"
    process = _start(run_dir, *ddp)
    _wait_for_checkpoint(process, run_dir, 3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    trained = _trained(run_dir)  # both ranks record every iteration
    assert sorted(set(trained)) == list(range(1, trained[-1] + 1)) and trained.count(trained[-1]) == 2
    stopped_at = _checkpoint(run_dir)["iteration"]
    assert stopped_at == trained[-1] and stopped_at % 6 != 0, "expected a stop in the middle of an epoch"

    resumed = _start(run_dir, *ddp, seconds=0.0)
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    assert_same_training_state(_checkpoint(run_dir), _checkpoint(full_dir))
