"""A finished run's checkpoint copied to a fixed place (e.g. the weights folder), where the next
step of a pipeline finds it without knowing the run folder: the GAN that CLIP2GAN freezes."""
from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class ExportCheckpoint(L.Callback):
    """After a fit that ran to its end (not an interrupted one), save the checkpoint to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.interrupted:
            return
        trainer.save_checkpoint(self.path)  # every rank calls it; the strategy writes on rank 0 only
        rank_zero_info(f"exported the trained model to {self.path}")
