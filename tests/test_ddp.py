"""DDP on 2 CPU processes (gloo): parameters stay identical across ranks, random z differs per rank."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from bicyclegan_pl.data.datamodules import SyntheticPairedDataModule
from bicyclegan_pl.models.bicyclegan import BicycleGAN
from bicyclegan_pl.runtime.distributed import ManualSyncDDPStrategy
from tests.helpers import LAZY_DISCRIMINATORS, compose_config


class RecordingBicycleGAN(BicycleGAN):
    """Remembers the random codes each rank drew."""

    def prepare_iteration(self, batch, generator):
        inputs = super().prepare_iteration(batch, generator)
        if not hasattr(self, "recorded_z"):
            self.recorded_z = []
        self.recorded_z.append(inputs["z_random"].clone())
        return inputs


class SaveRankState(L.Callback):
    def __init__(self, folder: str):
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().reshape(-1) for p in pl_module.parameters()])
        torch.save(
            {"params": flat, "z": torch.stack(pl_module.recorded_z), "iteration": pl_module.iteration},
            Path(self.folder) / f"rank{trainer.global_rank}.pt",
        )


@pytest.mark.parametrize("overrides", [(), (LAZY_DISCRIMINATORS,)], ids=["reference", "every_3"])
def test_ddp_two_cpu_processes_keep_ranks_in_sync(tmp_path, overrides):
    cfg = compose_config(
        "+experiment=bicycle_reference", "model._target_=tests.test_ddp.RecordingBicycleGAN", *overrides
    )
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all")
    initial = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=ManualSyncDDPStrategy(start_method="spawn", process_group_backend="gloo"),
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SaveRankState(str(tmp_path))],
    )
    data = SyntheticPairedDataModule(crop_size=32, train_size=16, val_size=4, batch_size=2, num_workers=0, seed=0)
    trainer.fit(model, datamodule=data)

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0["iteration"] == rank1["iteration"] == 3
    assert not torch.equal(rank0["params"], initial), "training must have changed the parameters"
    assert torch.equal(rank0["params"], rank1["params"]), "parameters diverged across ranks"
    assert rank0["z"].shape == rank1["z"].shape == (3, 1, cfg.model.nz)
    assert not torch.equal(rank0["z"], rank1["z"]), "every rank drew the same random z"


def test_the_strategy_names_in_messages_resolve():
    """The refusal message of plain DDP tells users to use `ddp_manual_sync`: that name must work."""
    for name in ("ddp_manual_sync", "ddp_spawn_manual_sync"):
        trainer = L.Trainer(strategy=name, accelerator="cpu", devices=2, logger=False, enable_checkpointing=False)
        assert isinstance(trainer.strategy, ManualSyncDDPStrategy)
