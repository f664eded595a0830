"""Test scaffolding for interrupted runs: a callback that slows training down (so a test can
signal or kill a real process at a known point) and records every iteration it trained, a
simulated crash, and the comparison of a resumed run's checkpoint with an uninterrupted one's."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


class Throttle(L.Callback):
    """Sleep ``seconds`` after each training iteration and append its number to ``record``."""

    def __init__(self, seconds: float = 0.0, record: str | None = None) -> None:
        self.seconds = seconds
        self.record = Path(record) if record else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.record is not None:
            with open(self.record, "a") as handle:
                handle.write(f"{pl_module.iteration}\n")
        time.sleep(self.seconds)


class StopAt(L.Callback):
    """Raise (as a crash would) right after iteration ``iteration``."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if pl_module.iteration == self.iteration:
            raise RuntimeError(f"simulated crash after iteration {self.iteration}")


def assert_same_training_state(a: dict, b: dict) -> None:
    """Two checkpoints (``torch.load``-ed) hold the same iteration, weights and Adam moments."""
    assert a["iteration"] == b["iteration"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs"
    for ours, theirs in zip(a["optimizer_states"], b["optimizer_states"]):
        for x, y in zip(ours["state"].values(), theirs["state"].values()):
            assert torch.equal(x["exp_avg"], y["exp_avg"]) and torch.equal(x["exp_avg_sq"], y["exp_avg_sq"])
