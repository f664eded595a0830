"""PNG sample grids during training: rows are inputs, columns are what the system shows.

Each system declares ``sample_columns(batch, num_samples, generator)`` (on
``ScheduledTranslationModule``), titled image columns (BicycleGAN: input, ground truth, encoded
reconstruction, random-z samples); ``rendering.render_grid`` draws them.
The inputs and random codes are fixed for the whole run, so grids of successive epochs
are directly comparable.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from bicyclegan_pl.data.batches import first_inputs
from bicyclegan_pl.rendering import render_grid

if TYPE_CHECKING:
    from bicyclegan_pl.models.base import ScheduledTranslationModule


class SampleGridCallback(L.Callback):
    """Writes ``<dirpath>/epoch_XXX.png`` (and ``latest.png``) after validation, and logs it to W&B."""

    def __init__(self, dirpath: str, every_n_epochs: int = 1, num_inputs: int = 8, num_samples: int = 5, seed: int = 1234):
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.num_inputs = num_inputs
        self.num_samples = num_samples
        self.seed = seed
        self._batch: dict[str, Any] | None = None

    def _fixed_batch(self, trainer: L.Trainer) -> dict[str, Any]:
        if self._batch is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
            self._batch = first_inputs(loader, self.num_inputs)
        return self._batch

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: ScheduledTranslationModule) -> None:
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        generator = torch.Generator().manual_seed(self.seed)
        columns = pl_module.sample_columns(self._fixed_batch(trainer), self.num_samples, generator)
        image = render_grid(columns)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"epoch_{trainer.current_epoch:03d}.png"
        image.save(path)
        image.save(self.dirpath / "latest.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[image], caption=[" | ".join(t for t, _ in columns)])
