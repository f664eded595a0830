"""Evaluation metrics during training: every ``every_n_epochs`` validation epochs (and the
last), the ``EvaluationSuite`` sees each validation batch with ``samples_per_input`` generated
samples and logs ``val/<metric>`` to every logger, where a ModelCheckpoint can monitor it.

The metric networks (Inception, LPIPS) live here, not in the LightningModule, so they never
enter model checkpoints. Every rank updates and computes (compute is a collective), and the
suite is reset after each computation; real-image statistics are kept (and cached on disk).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.metrics.suite import EvaluationSuite

if TYPE_CHECKING:
    from bicyclegan_pl.data.datamodules import _TranslationDataModule
    from bicyclegan_pl.models.base import ScheduledTranslationModule


class MetricsConfigurationError(UserError, ValueError):
    """The metrics and checkpoint settings contradict each other (a user-fixable config error)."""


def _first_loader(loaders: Any) -> DataLoader:
    return loaders[0] if isinstance(loaders, (list, tuple)) else loaders


class MetricsCallback(L.Callback):
    def __init__(self, suite: EvaluationSuite, every_n_epochs: int = 5, seed: int = 2024, prefix: str = "val/") -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.suite = suite
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.prefix = prefix
        self._active = False
        self._prepared = False
        self._generator: torch.Generator | None = None

    @property
    def logged_keys(self) -> list[str]:
        return [self.prefix + name for name in self.suite.metric_names()]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A checkpoint that monitors one of our metrics must only look when it was computed.
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint) or callback.monitor not in self.logged_keys:
                continue
            checkpoint_every = callback.every_n_epochs or 1  # 0 (steps or time trigger): as often as every epoch
            if checkpoint_every % self.every_n_epochs:
                raise MetricsConfigurationError(
                    f"ModelCheckpoint monitors {callback.monitor!r}, which is computed every "
                    f"{self.every_n_epochs} epochs (callbacks.metrics.every_n_epochs), but checks every "
                    f"{checkpoint_every}: set callbacks.model_checkpoint.every_n_epochs={self.every_n_epochs}."
                )

    def _due(self, trainer: L.Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: ScheduledTranslationModule) -> None:
        self._active = self._due(trainer)
        if not self._active:
            return
        self.suite.to(pl_module.device)
        if not self._prepared:
            dataset = _first_loader(trainer.val_dataloaders).dataset
            datamodule: _TranslationDataModule | None = trainer.datamodule  # None when fit() was given loaders
            self.suite.prepare(
                palette=datamodule.palette if datamodule is not None else None,
                data_config=(pl_module.run_config or {}).get("data"),
                split="val",
                num_items=len(dataset),
                rank=trainer.global_rank,
                world_size=trainer.world_size,
                encoded=pl_module.has_encoder,
                source_palette=datamodule.source_palette if datamodule is not None else None,
            )
            self._prepared = True
        # the same z at every evaluation, different per rank: curves show the model, not the draw
        self._generator = torch.Generator().manual_seed(self.seed + trainer.global_rank)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: ScheduledTranslationModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active:
            return
        samples = pl_module.sample_outputs(batch, self.suite.samples_needed, self._generator)
        reconstructions = pl_module.reconstruct(batch) if self.suite.wants_reconstructions else None
        self.suite.update(batch, samples, reconstructions=reconstructions)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: ScheduledTranslationModule) -> None:
        if not self._active:
            return
        results = self.suite.compute(rank=trainer.global_rank)
        self.suite.reset()
        self._active = False
        for name, value in results.items():
            # already reduced over ranks; sync_dist only keeps Lightning's epoch-level bookkeeping uniform
            pl_module.log(self.prefix + name, value, sync_dist=True)
