"""The best checkpoint is never an epoch whose monitored metric is NaN (callbacks.model_checkpoint)."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from bicyclegan_pl.callbacks.best_checkpoint import FiniteModelCheckpoint
from tests.helpers import compose_config, cpu_trainer


class LogsGivenValues(BoringModel):
    """Logs val/recon_l1 = values[epoch] at the end of each validation."""

    def __init__(self, values: list[float]):
        super().__init__()
        self.values = values

    def validation_step(self, batch, batch_idx):
        return None

    def on_validation_epoch_end(self) -> None:
        self.log("val/recon_l1", torch.tensor(self.values[self.current_epoch]))


def _fit(callback: ModelCheckpoint, values: list[float]) -> None:
    trainer = cpu_trainer(
        max_epochs=len(values), callbacks=[callback], enable_checkpointing=True,
        limit_train_batches=1, limit_val_batches=1,
    )
    trainer.fit(LogsGivenValues(values))


def _configured(tmp_path) -> ModelCheckpoint:
    """The model_checkpoint callback exactly as conf/callbacks/default.yaml builds it."""
    cfg = compose_config()
    return instantiate({**cfg.callbacks.model_checkpoint, "dirpath": str(tmp_path)}, _convert_="all")


def test_the_configured_checkpoint_skips_nan_epochs(tmp_path):
    callback = _configured(tmp_path)
    assert isinstance(callback, FiniteModelCheckpoint) and callback.monitor == "val/recon_l1"
    nan = float("nan")
    with pytest.warns(UserWarning, match=r"val/recon_l1=nan at epoch 0 is not finite; not saved as a best checkpoint"):
        _fit(callback, [nan, 0.5, nan, 0.7])
    assert callback.best_model_path.endswith("best-epoch001.ckpt")
    assert callback.best_model_score == pytest.approx(0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-epoch001.ckpt"]


def test_only_nan_epochs_leave_no_best_checkpoint(tmp_path):
    callback = _configured(tmp_path)
    with pytest.warns(UserWarning, match="not finite"):
        _fit(callback, [float("nan"), float("inf")])
    assert callback.best_model_path == "" and list(tmp_path.iterdir()) == []


def test_lightning_alone_would_keep_a_first_nan_as_best(tmp_path):
    """Why the subclass exists: the pinned Lightning saves a NaN first value (as +inf) and calls it best."""
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="val/recon_l1", mode="min", save_top_k=1)
    _fit(callback, [float("nan")])
    assert callback.best_model_path != "" and torch.isinf(callback.best_model_score)
