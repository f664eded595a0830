"""last.ckpt during the epoch, atomically, and a resume from it that equals an uninterrupted run.

In-process runs with a simulated crash; tests/test_interruption_cli.py kills real processes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bicyclegan_pl.callbacks import LastCheckpoint
from bicyclegan_pl.checkpoint_io import AtomicCheckpointIO, atomic_torch_save
from bicyclegan_pl.data.datamodules import SyntheticPairedDataModule, SyntheticUnpairedDataModule
from tests.helpers import SMALL_CYCLEGAN, build_model, clone, cpu_trainer
from tests.interruption import StopAt

BATCHES_PER_EPOCH = 6  # 12 items, batch 2
EPOCHS = 3


def _datamodule(kind: str, workers: int):
    common = dict(crop_size=32, train_size=12, val_size=4, batch_size=2, num_workers=workers, seed=3)
    return SyntheticPairedDataModule(**common) if kind == "paired" else SyntheticUnpairedDataModule(**common)


def _fit(model, folder: Path, kind: str, workers: int, stop_at: int | None = None, resume: Path | None = None):
    callbacks = [LastCheckpoint(folder, every_n_iterations=4, handle_signals=False)]
    if stop_at is not None:
        callbacks.append(StopAt(stop_at))
    trainer = cpu_trainer(max_epochs=EPOCHS, callbacks=callbacks, enable_checkpointing=True, plugins=[AtomicCheckpointIO()])
    trainer.fit(model, datamodule=_datamodule(kind, workers), ckpt_path=resume)
    return trainer


@pytest.mark.parametrize(
    "experiment, kind, workers",
    [("bicycle_reference", "paired", 0), ("bicycle_reference", "paired", 2), ("cyclegan_synthetic", "unpaired", 0)],
)
def test_resume_from_a_mid_epoch_checkpoint_equals_the_uninterrupted_run(experiment, kind, workers, tmp_path):
    torch.manual_seed(0)
    if kind == "paired":
        initial, _ = build_model(f"+experiment={experiment}")
    else:
        initial, _ = build_model(f"+experiment={experiment}", *SMALL_CYCLEGAN[1:], tiny=False)

    uninterrupted = clone(initial)
    full = _fit(uninterrupted, tmp_path / "full", kind, workers)

    crashed = clone(initial)
    with pytest.raises(RuntimeError, match="simulated crash after iteration 10"):
        _fit(crashed, tmp_path / "crashed", kind, workers, stop_at=10)
    last = tmp_path / "crashed" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["iteration"] == 8  # every 4 iterations: the one in the middle of epoch 1 is the latest
    assert saved["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 1
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches_done": 8 - BATCHES_PER_EPOCH, "epoch_complete": False}
    ]

    resumed = clone(initial)
    resumed_trainer = _fit(resumed, tmp_path / "resumed", kind, workers, resume=last)
    assert resumed.iteration == uninterrupted.iteration == EPOCHS * BATCHES_PER_EPOCH
    for (key, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{key} differs after a mid-epoch resume"
    for ours, theirs in zip(full.optimizers, resumed_trainer.optimizers):
        for a, b in zip(ours.state_dict()["state"].values(), theirs.state_dict()["state"].values()):
            assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"]) and torch.equal(a["step"], b["step"])


def test_restarting_the_epoch_instead_gives_different_weights(tmp_path):
    """The position matters: replaying the epoch from its first batch (what Lightning does with
    a plain DataLoader) does not reproduce the run, so the test above can fail."""
    torch.manual_seed(0)
    initial, _ = build_model("+experiment=bicycle_reference")
    uninterrupted = clone(initial)
    _fit(uninterrupted, tmp_path / "full", "paired", 0)
    crashed = clone(initial)
    with pytest.raises(RuntimeError):
        _fit(crashed, tmp_path / "crashed", "paired", 0, stop_at=10)
    checkpoint = torch.load(tmp_path / "crashed" / "last.ckpt", weights_only=False)
    checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_done"] = 0
    replayed = tmp_path / "replayed.ckpt"
    torch.save(checkpoint, replayed)
    resumed = clone(initial)
    _fit(resumed, tmp_path / "resumed", "paired", 0, resume=replayed)
    assert not all(torch.equal(a, b) for a, b in zip(uninterrupted.state_dict().values(), resumed.state_dict().values()))


def test_last_checkpoint_after_every_epoch_and_every_n_iterations(tmp_path):
    class Saves(LastCheckpoint):
        def save(self, trainer):
            super().save(trainer)
            self.iterations.append(trainer.lightning_module.iteration)

    model, _ = build_model("+experiment=bicycle_reference")
    saves = Saves(tmp_path, every_n_iterations=4, handle_signals=False)
    saves.iterations = []
    trainer = cpu_trainer(max_epochs=2, callbacks=[saves], enable_checkpointing=True)
    trainer.fit(model, datamodule=_datamodule("paired", 0))
    # epoch ends (6, 12) and every 4th iteration that is not an epoch end (4, 8)
    assert saves.iterations == [4, 6, 8, 12]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["iteration"] == 12


def test_an_interrupted_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"iteration": 1, "weights": torch.ones(1000)}, path)

    def dies_half_way(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt  # the process is stopped in the middle of the write

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"iteration": 2, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
