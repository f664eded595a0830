"""Stopping cleanly on a signal: save at the next iteration boundary, then exit non-zero.

Who sends what:
- SIGINT: Ctrl+C.
- SIGTERM: `kill`, `timeout`, `docker stop`, `scancel`, and Slurm when it pre-empts or requeues a
  job (`scontrol requeue`); Slurm itself decides whether the job comes back.
- SIGUSR1 / SIGUSR2: a time-limit warning (`sbatch --signal=USR2@120`, what submitit and so
  `hydra/launcher=slurm` ask for) or `scancel --signal=USR1|USR2`: the job should come back.

While the training loop runs, `StopRequest` replaces the handlers of these signals with one that
only records the first signal, so the iteration in progress finishes, the `LastCheckpoint`
callback writes `last.ckpt` and raises `TrainingInterrupted`. The entry point then exits with
128 + the signal number, or, for USR1/USR2 in a submitit job, hands over to submitit's own
handler, which requeues the job (submitit owns the requeue; Lightning's is switched off).
A second signal during the save is reported and otherwise ignored; the save is atomic anyway.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)

Handler = Callable[[int, FrameType | None], Any] | int | None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``checkpoint`` at ``iteration``."""

    def __init__(self, signum: int, iteration: int, checkpoint: Path | None) -> None:
        self.signum = signum
        self.iteration = iteration
        self.checkpoint = checkpoint
        saved = f"saved {checkpoint}" if checkpoint is not None else "no checkpoint was saved"
        super().__init__(f"stopped by {signal_name(signum)} after iteration {iteration}: {saved}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The first stop signal received while installed (``signum``), nothing else."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Handler] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals are delivered to the main thread only; nothing to install from here
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._receive)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _receive(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            print(
                f"\nreceived {signal_name(signum)}: saving a checkpoint after the current iteration, then stopping",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(
                f"\nreceived {signal_name(signum)} while stopping on {signal_name(self.signum)}: "
                "the checkpoint is being written, please wait",
                file=sys.stderr,
                flush=True,
            )


def launcher_handlers() -> dict[int, Handler]:
    """The handlers installed by whatever started this process (submitit installs one for its
    requeue signal); call before Lightning installs its own."""
    return {signum: signal.getsignal(signum) for signum in REQUEUE_SIGNALS}


def exit_after_interruption(interrupted: TrainingInterrupted, handlers: dict[int, Handler]) -> None:
    """Requeue through the launcher's handler for a requeue signal, else exit 128 + signal."""
    handler = handlers.get(interrupted.signum)
    if interrupted.signum in REQUEUE_SIGNALS and callable(handler):
        print(f"handing {signal_name(interrupted.signum)} to the job launcher to requeue the job", file=sys.stderr)
        handler(interrupted.signum, None)  # submitit: requeue the job and exit; returns on ranks > 0
    sys.exit(interrupted.exit_code)
