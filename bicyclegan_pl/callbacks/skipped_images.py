"""The count of skipped image files (`data.on_bad_image=skip`) at the end of every training epoch.

Files are skipped at setup (the header scan) and inside DataLoader workers (a file that fails
to decode), which are other processes: they all append to `<run folder>/skipped_images.txt`
(`data.skipping`), and this callback, in the main process, counts the distinct files listed
there, so the log says how much data training has lost, epoch by epoch.
"""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

from bicyclegan_pl.data.skipping import SKIPPED_IMAGES_FILE, count_skipped

log = logging.getLogger(__name__)


class SkippedImagesCallback(L.Callback):
    """Logs `data/skipped_images` and a warning naming the list when any file was skipped;
    silent otherwise. `dirpath`: the run folder (where the datamodule writes the list)."""

    def __init__(self, dirpath: str | Path) -> None:
        self.listing = Path(dirpath) / SKIPPED_IMAGES_FILE

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        count = count_skipped(self.listing)
        if count == 0:
            return
        pl_module.log("data/skipped_images", float(count), rank_zero_only=True)
        if trainer.is_global_zero:
            log.warning(
                "epoch %d: %d image file(s) skipped so far (data.on_bad_image=skip), listed in %s",
                trainer.current_epoch, count, self.listing,
            )
