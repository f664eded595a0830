"""A ModelCheckpoint that never keeps a checkpoint whose monitored value is NaN or infinite.

Lightning's ModelCheckpoint (2.6) saves any value while it holds fewer than ``save_top_k``
checkpoints, and turns a NaN into +inf (mode min) or -inf (mode max) on the way: a diverged
first validation becomes ``best`` and stays so until a finite value beats it, and a run that
only ever diverges reports a NaN model as its best checkpoint.
"""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor


class FiniteModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that skips (with a warning) an epoch whose monitored value is not finite."""

    def check_monitor_top_k(self, trainer: L.Trainer, current: Tensor | None = None) -> bool:
        if current is not None:
            # every rank must take the same decision (a rank skipping alone would wait forever in a collective)
            finite = trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(current).all()), all=True)
            if not finite:
                rank_zero_warn(
                    f"ModelCheckpoint: {self.monitor}={current.item()} at epoch {trainer.current_epoch} is not finite; "
                    "not saved as a best checkpoint"
                )
                return False
        return super().check_monitor_top_k(trainer, current)
