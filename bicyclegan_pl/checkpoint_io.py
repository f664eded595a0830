"""Checkpoint files that are either the old one or the new one, never half of each.

Lightning's `TorchCheckpointIO` writes through an fsspec transaction, which for a local path
stages the file in the system temp folder and then moves it. When the temp folder is on
another filesystem (a node-local /tmp or tmpfs next to a shared run folder, the usual case on
clusters) the move is a copy into the target path, so a kill during it leaves a truncated
`last.ckpt`, and a multi-GB checkpoint must also fit in /tmp. This plugin writes next to the
target, flushes it to disk and renames it over the target in one `os.replace`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to ``path`` so that a reader (or a crash at any moment) sees either the
    previous file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power loss
    finally:
        os.close(directory)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` with an atomic local write (remote URLs keep Lightning's path)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
