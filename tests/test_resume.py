"""Resume: N iterations, save, resume to 2N == an uninterrupted 2N run (parameters and optimiser states)."""
from __future__ import annotations

import pytest
import torch

from bicyclegan_pl.data.datamodules import SyntheticPairedDataModule
from tests.helpers import LAZY_DISCRIMINATORS, build_model, clone, cpu_trainer


def _datamodule() -> SyntheticPairedDataModule:
    return SyntheticPairedDataModule(crop_size=32, train_size=8, val_size=4, batch_size=2, num_workers=0, seed=3)


def _fit(model, epochs: int, ckpt_path=None):
    trainer = cpu_trainer(max_epochs=epochs)
    trainer.fit(model, datamodule=_datamodule(), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize(
    ("experiment", "overrides"),
    [("bicycle_reference", ()), ("bicycle_order_b", ()), ("bicycle_reference", (LAZY_DISCRIMINATORS,))],
    ids=["reference", "order_b", "every_3"],
)
def test_resume_equals_uninterrupted_run(experiment, overrides, tmp_path):
    torch.manual_seed(0)
    initial, _ = build_model(f"+experiment={experiment}", "data.batch_size=2", *overrides)

    uninterrupted = clone(initial)
    full_trainer = _fit(uninterrupted, epochs=2)

    first_half = clone(initial)
    _fit(first_half, epochs=1).save_checkpoint(tmp_path / "half.ckpt")
    assert first_half.iteration == 4

    resumed = clone(initial)
    resumed_trainer = _fit(resumed, epochs=2, ckpt_path=tmp_path / "half.ckpt")

    assert resumed.iteration == uninterrupted.iteration == 8
    assert not torch.equal(
        next(iter(first_half.generator.parameters())), next(iter(uninterrupted.generator.parameters()))
    ), "the second half must have trained"
    for (key, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{key} differs after resume"
    for ours, theirs in zip(full_trainer.optimizers, resumed_trainer.optimizers):
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
        for a, b in zip(ours.state_dict()["state"].values(), theirs.state_dict()["state"].values()):
            assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
            assert torch.equal(a["step"], b["step"])
    if overrides:  # the every-3 phase stepped at iterations 1, 4 and 7 only, before and after the resume
        steps = [int(o.state_dict()["state"][0]["step"]) for o in resumed_trainer.optimizers]
        assert steps == [8, 8, 3, 3]
