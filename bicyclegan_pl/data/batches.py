"""Joining loader batches: the first inputs of a loader as one batch (the rows of a sample grid)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def first_inputs(loader: Iterable[dict[str, Any]], count: int) -> dict[str, Any]:
    """The first `count` items of `loader` as one batch: tensors concatenated, lists (file
    paths) joined, both cut to `count`; other values are the first batch's. Reads only as
    many batches as it needs; fewer items when the loader has fewer."""
    batches, seen = [], 0
    for batch in loader:
        batches.append(batch)
        seen += len(next(value for value in batch.values() if isinstance(value, torch.Tensor)))
        if seen >= count:
            break
    if not batches:
        raise ValueError("the loader yields no batch")
    joined: dict[str, Any] = {}
    for key, value in batches[0].items():
        if isinstance(value, torch.Tensor):
            joined[key] = torch.cat([batch[key] for batch in batches])[:count]
        elif isinstance(value, list):
            joined[key] = [item for batch in batches for item in batch[key]][:count]
        else:
            joined[key] = value
    return joined
