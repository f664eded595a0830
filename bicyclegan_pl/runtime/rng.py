"""Per-iteration random draws: every random number of an iteration is a pure function of
(seed, rank, iteration), so resuming reproduces an uninterrupted run and ranks differ."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def iteration_seed(seed: int, rank: int, iteration: int) -> int:
    """A well-mixed 63-bit seed for one iteration of one rank.

    Every random draw of an iteration (latent codes, dropout masks) is a pure function of
    (seed, rank, iteration): resuming reproduces an uninterrupted run, and ranks differ.
    """
    return int(np.random.SeedSequence([seed, rank, iteration]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


@contextmanager
def iteration_rng(seed: int, rank: int, iteration: int, device: torch.device) -> Iterator[torch.Generator]:
    """Seed the global RNGs (dropout) for one iteration and restore them afterwards.

    Yields a CPU generator for the explicit draws (z, eps), so they do not depend on how many
    numbers dropout consumed and are the same on CPU and GPU.
    """
    value = iteration_seed(seed, rank, iteration)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(value)
        yield torch.Generator().manual_seed(value ^ 0x5DEECE66D)
