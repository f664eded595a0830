"""Training loaders that resume in the middle of an epoch.

Lightning restores its loop counters from a checkpoint, but a plain DataLoader restarts its
epoch from the first batch, so a run resumed from a checkpoint taken at batch k of an epoch
would see batches 0.. again instead of k... Lightning saves and restores the state of a loader
that has ``state_dict``/``load_state_dict`` (its ``_Stateful`` protocol) next to the loop
counters; this loader stores where in which epoch training stood, and its sampler skips the
batches already trained when the next epoch iterator starts.

The position is read from the trainer's progress (batches processed in the current epoch), not
counted by the sampler: Lightning fetches one batch ahead, so a count of indices handed out
would be one batch too far.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader, DistributedSampler

#: (batches of the current epoch already trained, whether the epoch is complete)
TrainingPosition = Callable[[], tuple[int, bool]]


class ResumableSampler(DistributedSampler):
    """The shuffling `DistributedSampler` (order = f(seed, epoch, rank), partial batches
    dropped) that can start its next epoch after the first ``batches_done`` batches."""

    def __init__(self, dataset: Any, *, batch_size: int, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self._skip_items = 0

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """The next iterator yields epoch ``epoch`` from batch ``batches_done`` on (once)."""
        self.set_epoch(epoch)
        self._skip_items = batches_done * self.batch_size

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip_items = self._skip_items, 0
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """A training DataLoader over a `ResumableSampler` whose position travels in checkpoints.

    ``position`` reports the trainer's progress when a checkpoint is written; on restore the
    sampler resumes there: the same epoch after the trained batches, or the next epoch from its
    start when the checkpoint was taken at the end of an epoch.
    """

    def __init__(self, *args: Any, position: TrainingPosition | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumableSampler):
            raise TypeError(f"ResumableDataLoader needs a ResumableSampler, got {type(self.sampler).__name__}")
        self.position = position

    def state_dict(self) -> dict[str, Any]:
        batches_done, epoch_complete = self.position() if self.position is not None else (0, True)
        return {"epoch": int(self.sampler.epoch), "batches_done": int(batches_done), "epoch_complete": bool(epoch_complete)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["epoch_complete"]:
            self.sampler.resume_at(state["epoch"] + 1, 0)
        else:
            self.sampler.resume_at(state["epoch"], state["batches_done"])
