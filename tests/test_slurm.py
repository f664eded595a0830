"""Sweeps on a real Slurm cluster (hydra/launcher=slurm_cpu): one allocation per sweep point,
`srun` starts one task per DDP rank and Lightning detects SLURM (so it spawns no processes itself);
Slurm's time-limit signal makes submitit requeue the job, which resumes from last.ckpt.

The cluster is the one-node cluster of .ci/slurm-cluster (fixture `slurm_cluster` in conftest.py).
It has no accounting database, so submitit's `sacct` polls fail and the launcher learns that a
job ended only from the job's result files: a job that Slurm kills (time limit, crash of srun)
leaves the launcher waiting forever. The tests therefore watch `squeue` themselves and fail with
the jobs' logs instead of hanging.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.cli import REPO, TINY
from tests.interruption import assert_same_training_state

# one cluster per test session: under pytest-xdist every Slurm test runs in the same worker
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

LAUNCHER_TIMEOUT_S = 420  # jobs run one after the other: each takes the node's 2 CPUs
GONE_GRACE_S = 60  # launcher still waiting this long after its jobs left the queue: it never returns
# torch's C++ stack frames, and submitit's sacct polls that fail without accounting (every few s)
NOISE = ("frame #", "Slurm accounting storage is disabled", "Bypassing sacct error")


def _launcher_command(partition: str, job_name: str, sweep_dir: Path, *overrides: str) -> list[str]:
    """`python -m bicyclegan_pl.train -m` on the test cluster: tiny nets, 2 DDP ranks over gloo."""
    return [
        sys.executable, "-m", "bicyclegan_pl.train", "-m",
        "hydra/launcher=slurm_cpu",
        f"hydra.launcher.partition={partition}",
        "hydra.launcher.cpus_per_task=1",  # 2 tasks x 1 CPU: one job fills the 2-CPU test node
        "hydra.launcher.mem_gb=2",
        f"hydra.launcher.name={job_name}",  # to find (and cancel) this test's jobs in the queue
        # a job takes ~10-30 s. A stuck one is a failure: Slurm ends it after 3 min (time-limit
        # signal 30 s before), and when one rank fails and exits, srun ends the other rank 30 s
        # later instead of leaving it waiting for the process group (SLURM_WAIT = srun --wait)
        "hydra.launcher.timeout_min=3",
        "hydra.launcher.signal_delay_s=30",
        "hydra.launcher.setup=['export SLURM_WAIT=30']",
        f"hydra.sweep.dir={sweep_dir}",
        "trainer=ddp", "trainer.accelerator=cpu",
        *TINY, "callbacks.metrics=null", "logger=csv",
        *overrides,
    ]  # fmt: skip


def _squeue(job_name: str) -> list[str]:
    command = ["squeue", "-h", "-n", job_name, "-o", "%i %T %R"]
    return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.splitlines()


def _tail(path: Path, lines: int = 60) -> str:
    text = [line for line in path.read_text(errors="replace").splitlines() if not any(n in line for n in NOISE)]
    return "\n".join(text[-lines:])


def _task_outcome(result_file: Path) -> str:
    """What a task returned: a run that raises inside Hydra's job still ends "successfully" for
    submitit (Hydra catches the error into its JobReturn), so its log does not show the error."""
    from submitit.core.utils import pickle_load

    outcome, value = pickle_load(result_file)
    if outcome != "success":
        return f"{outcome}: {value}"
    status = getattr(value, "status", None)
    return f"{getattr(status, 'name', status)}: {getattr(value, '_return_value', value)!r}"


def _job_logs(sweep_dir: Path) -> str:
    """The launcher's output, then every task's submitit stdout/stderr (one file per rank) and result."""
    launcher_log = sweep_dir.parent / "launcher.log"
    parts = [f"=== launcher ({launcher_log})\n{_tail(launcher_log, 80)}"]
    for log in sorted((sweep_dir / ".submitit").glob("*/*_log.*")):
        parts.append(f"=== {log.relative_to(sweep_dir)}\n{_tail(log)}")
    for result in sorted((sweep_dir / ".submitit").glob("*/*_result.pkl")):
        parts.append(f"=== {result.relative_to(sweep_dir)}: {_task_outcome(result)}")
    slurmctld = Path("/var/log/slurm/slurmctld.log")
    if slurmctld.is_file():
        parts.append(f"=== {slurmctld}\n{_tail(slurmctld, 30)}")
    return "\n".join(parts)


def _run_launcher(
    command: list[str], sweep_dir: Path, job_name: str, while_running: Callable[[], None] = lambda: None
) -> float:
    """Runs the launcher (it submits and waits for its jobs) and returns its wall time; fails the
    test with every log when it exits non-zero, runs too long or waits for jobs that are gone."""
    with (sweep_dir.parent / "launcher.log").open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    started = last_seen_jobs = time.monotonic()
    stopped = None
    while process.poll() is None:
        time.sleep(1)
        while_running()
        if _squeue(job_name) or not list((sweep_dir / ".submitit").glob("*/*_submitted.pkl")):
            last_seen_jobs = time.monotonic()  # queued, running or requeued, or not submitted yet
        elif time.monotonic() - last_seen_jobs > GONE_GRACE_S:
            stopped = f"the launcher still waits {GONE_GRACE_S} s after its jobs left the queue (a task died without a result)"
        if time.monotonic() - started > LAUNCHER_TIMEOUT_S:
            stopped = f"the launcher did not finish in {LAUNCHER_TIMEOUT_S} s; queue: {_squeue(job_name)}"
        if stopped:
            subprocess.run(["scancel", "-n", job_name], timeout=30)
            process.kill()
            process.wait()
            pytest.fail(f"{stopped}\n{_job_logs(sweep_dir)}", pytrace=False)
    if process.returncode != 0:
        pytest.fail(f"the launcher exited with {process.returncode}\n{_job_logs(sweep_dir)}", pytrace=False)
    return time.monotonic() - started


def test_sweep_runs_as_one_slurm_job_per_point_with_one_task_per_ddp_rank(slurm_cluster, tmp_path):
    sweep_dir = tmp_path / "sweep"
    job_name = f"bicyclegan_test_sweep_{os.getpid()}"
    command = _launcher_command(
        slurm_cluster, job_name, sweep_dir, "trainer.max_epochs=2", "hydra.launcher.max_num_timeout=0",
        "model.loss_weights.kl=0.01,0.02",
    )  # fmt: skip
    print(f"sweep of 2 Slurm jobs took {_run_launcher(command, sweep_dir, job_name):.1f} s")
    logs = _job_logs(sweep_dir)
    assert "Submitit 'slurm' sweep output dir" in (sweep_dir.parent / "launcher.log").read_text(), logs

    # one Slurm job per sweep point, each ran its two ranks as two srun tasks
    job_dirs = sorted(p for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and re.fullmatch(r"\d+_\d+", p.name))
    assert len(job_dirs) == 2, logs
    for job_dir in job_dirs:
        for rank in (0, 1):
            task_log = next(job_dir.glob(f"*_{rank}_log.out"), None)
            assert task_log is not None, logs
            assert f"global_rank={rank}(2)" in task_log.read_text(), logs
            assert next(job_dir.glob(f"*_{rank}_result.pkl"), None) is not None, logs

    for index in range(2):  # which point each folder trained: the report's table below
        run_dir = sweep_dir / str(index)
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        # 8 training items split over 2 ranks, batch 4: 1 iteration per epoch (2 on one process)
        assert checkpoint["iteration"] == 2, logs
        assert (run_dir / "csv" / "metrics.csv").is_file(), logs

    command = [sys.executable, "-m", "bicyclegan_pl.report", str(sweep_dir)]
    report = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    table = [line for line in report.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2, report.stdout  # header + one row per job
    assert "model.loss_weights.kl=0.01" in table[1] and "model.loss_weights.kl=0.02" in table[2], report.stdout


def _array_task(job_name: str, index: int) -> str | None:
    """The Slurm id (`<array job>_<index>`) of sweep point ``index`` while it is running."""
    for line in _squeue(job_name):
        job_id, state = line.split()[:2]
        if job_id.endswith(f"_{index}") and state == "RUNNING":
            return job_id
    return None


def _saved_iteration(run_dir: Path) -> int:
    path = run_dir / "checkpoints" / "last.ckpt"
    return torch.load(path, weights_only=False)["iteration"] if path.is_file() else 0


def test_preempted_and_time_limited_jobs_are_requeued_resume_and_end_like_the_uninterrupted_job(slurm_cluster, tmp_path):
    """Three identical sweep points. Point 0 is pre-empted the way Slurm does it (`scontrol
    requeue`: SIGTERM to both ranks, Slurm requeues); point 1 gets the time-limit warning
    (`scancel --signal=USR2`: both ranks save, submitit requeues); point 2 runs through. Both
    interrupted jobs resume from the checkpoint written on the signal, train only the iterations
    after it, and end with exactly the weights and optimiser state of point 2."""
    sweep_dir = tmp_path / "sweep"
    job_name = f"bicyclegan_test_requeue_{os.getpid()}"
    total = 4 * 4  # 4 epochs of 32 items over 2 ranks, batch 4
    throttle = "{_target_:tests.interruption.Throttle,seconds:1.0,record:'${paths.output_dir}/iterations.txt'}"
    command = _launcher_command(
        slurm_cluster, job_name, sweep_dir, "data.train_size=32", "trainer.max_epochs=4",
        "callbacks.last_checkpoint.every_n_iterations=2", f"+callbacks.throttle={throttle}",
        "hydra.launcher.max_num_timeout=2",  # submitit counts a USR2 under 10 min of run time as a time limit
        "name=preempted,time_limited,uninterrupted",
    )  # fmt: skip
    interruptions = {0: ["scontrol", "requeue"], 1: ["scancel", "--signal=USR2"]}
    done: set[int] = set()

    def interrupt_in_the_middle_of_the_run() -> None:
        for index, command_prefix in interruptions.items():
            job_id = _array_task(job_name, index)
            if index not in done and job_id and _saved_iteration(sweep_dir / str(index)) >= 5:
                subprocess.run([*command_prefix, job_id], check=True, timeout=30)
                done.add(index)

    print(f"3 jobs, 2 requeued, took {_run_launcher(command, sweep_dir, job_name, interrupt_in_the_middle_of_the_run):.1f} s")
    logs = _job_logs(sweep_dir)
    assert done == {0, 1}, f"not interrupted: {sorted(set(interruptions) - done)}\n{logs}"

    reference = torch.load(sweep_dir / "2" / "checkpoints" / "last.ckpt", weights_only=False)
    assert reference["iteration"] == total, logs
    for index, signal_name in ((0, "SIGTERM"), (1, "SIGUSR2")):
        run_dir = sweep_dir / str(index)
        rank_zero = "".join(p.read_text() for p in sorted((sweep_dir / ".submitit").glob(f"*_{index}/*_0_log.*")))
        stops = re.findall(rf"stopped by {signal_name} after iteration (\d+): saved", rank_zero)
        resumes = re.findall(r"resuming from .*last\.ckpt \(after iteration (\d+)\)", rank_zero)
        assert len(stops) == 1 and resumes == stops, f"point {index}: stops {stops}, resumes {resumes}\n{logs}"
        stopped_at = int(stops[0])
        assert 5 <= stopped_at < total, logs
        # both ranks record every iteration they train: the first start trained 1..stopped_at, the
        # requeued one only the iterations after the checkpoint
        trained = [int(v) for v in (run_dir / "iterations.txt").read_text().split()]
        first, second = trained[: 2 * stopped_at], trained[2 * stopped_at :]
        assert sorted(first) == sorted(2 * list(range(1, stopped_at + 1))), logs
        assert sorted(second) == sorted(2 * list(range(stopped_at + 1, total + 1))), logs
        # ... and the result is the uninterrupted run's, bit for bit
        assert_same_training_state(torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False), reference)
    # the time-limit signal is submitit's to requeue (Lightning's auto-requeue is off)
    assert "Requeued job" in "".join(p.read_text() for p in (sweep_dir / ".submitit").glob("*_1/*_0_log.*")), logs
