"""How much memory a forward pass leaves for the backward pass, measured on any device.

Without a GPU there is no ``torch.cuda.max_memory_allocated``; what autograd saves for backward
is the part of training memory that grows with the batch, and it can be counted anywhere
through ``torch.autograd.graph.saved_tensors_hooks``. Parameters are not counted (they are
resident anyway), and a storage saved by several nodes is counted once.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class SavedActivations:
    """Bytes of the distinct non-parameter storages autograd saved while the context was open."""

    excluded: set[int] = field(default_factory=set)
    storages: dict[int, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def _pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.excluded:
            self.storages[key] = storage.nbytes()
        return tensor


@contextmanager
def count_saved_activations(exclude: Iterable[nn.Module] = ()) -> Iterator[SavedActivations]:
    """``with count_saved_activations([net]) as saved: loss = net(x)`` -> ``saved.bytes``."""
    excluded = {p.untyped_storage().data_ptr() for module in exclude for p in module.parameters()}
    excluded |= {b.untyped_storage().data_ptr() for module in exclude for b in module.buffers()}
    saved = SavedActivations(excluded=excluded)
    with torch.autograd.graph.saved_tensors_hooks(saved._pack, lambda tensor: tensor):
        yield saved
