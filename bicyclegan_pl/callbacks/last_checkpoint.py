"""`checkpoints/last.ckpt`: written at the end of every epoch, every N iterations and on a stop
signal, so a run that is killed, pre-empted or stopped by a bad image loses little.

Lightning's `ModelCheckpoint(save_top_k=0, save_last=True)` writes "last" only when training
ends ("last" is saved together with a top-k save, and there is none), so this callback does it
itself. It is a `Checkpoint`, which makes Lightning call its epoch-end hook after the module's
(the learning-rate schedulers have stepped by then). Files are written atomically by `AtomicCheckpointIO`, which the entry
point installs; the loader's position inside the epoch travels with the file
(`data/resumable.py`), so a mid-epoch checkpoint resumes bit for bit.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_info

from bicyclegan_pl.preemption import StopRequest, TrainingInterrupted


class LastCheckpoint(Checkpoint):
    """Keep ``dirpath/filename`` resumable.

    Args:
        dirpath: the run's checkpoint folder.
        filename: the file name (``ckpt_path=last`` looks for ``last.ckpt``).
        every_n_iterations: also save after every N-th iteration (0: only at epoch ends).
        every_n_minutes: also save when this many minutes passed since the last save
            (None: off); long epochs on slow or fast hardware alike lose at most this much.
        handle_signals: save and stop on SIGINT/SIGTERM/SIGUSR1/SIGUSR2 (see `preemption`).
    """

    def __init__(
        self,
        dirpath: str | Path,
        filename: str = "last.ckpt",
        every_n_iterations: int = 1000,
        every_n_minutes: float | None = None,
        handle_signals: bool = True,
    ) -> None:
        if every_n_iterations < 0:
            raise ValueError(f"every_n_iterations must be >= 0 (0 = epoch ends only), got {every_n_iterations}")
        if every_n_minutes is not None and every_n_minutes <= 0:
            raise ValueError(f"every_n_minutes must be positive or null, got {every_n_minutes}")
        self.path = Path(dirpath) / filename
        self.every_n_iterations = every_n_iterations
        self.every_n_minutes = every_n_minutes
        self.handle_signals = handle_signals
        self.stop = StopRequest()
        self._last_save = time.monotonic()

    # ---- when ---------------------------------------------------------------------------------
    def _periodic_save_due(self, iteration: int) -> bool:
        by_count = self.every_n_iterations > 0 and iteration % self.every_n_iterations == 0
        by_time = self.every_n_minutes is not None and time.monotonic() - self._last_save >= 60 * self.every_n_minutes
        return by_count or by_time

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_save = time.monotonic()
        if self.handle_signals:
            self.stop.install()
            if trainer.received_sigterm:  # arrived during set-up, under Lightning's handler
                self.stop.signum = int(signal.SIGTERM)

    def _agree(self, trainer: L.Trainer, save_due: bool) -> tuple[int, bool]:
        """(the stop signal received by any rank, 0 for none; whether any rank wants a save), in
        one collective, so that every rank saves (itself a collective) and stops together."""
        local = torch.tensor([float(self.stop.signum or 0), float(save_due)], device=trainer.strategy.root_device)
        agreed = trainer.strategy.reduce(local, reduce_op="max") if trainer.world_size > 1 else local
        return int(agreed[0].item()), bool(agreed[1].item())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch's end (validation, LR schedulers) comes first; it saves and stops
        iteration = pl_module.iteration
        signum, due = self._agree(trainer, self._periodic_save_due(iteration))
        if signum or due:
            self.save(trainer)
        if signum:
            self._raise_stop(signum, iteration)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)
        signum, _ = self._agree(trainer, False)
        if signum:
            self._raise_stop(signum, pl_module.iteration)

    # restore the handlers before Lightning restores its own (in its teardown), so that
    # Lightning's SIGTERM handler does not outlive the trainer
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop.restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.stop.restore()

    # ---- how ----------------------------------------------------------------------------------
    def save(self, trainer: L.Trainer) -> None:
        """Write the checkpoint (a collective: every rank calls it, rank 0 writes)."""
        trainer.save_checkpoint(self.path, weights_only=False)  # full state (and no log line per save)
        self._last_save = time.monotonic()

    def _raise_stop(self, signum: int, iteration: int) -> None:
        rank_zero_info(f"stopping after iteration {iteration}; {self.path} is up to date")
        raise TrainingInterrupted(signum, iteration, self.path)
