"""`data.on_bad_image=skip`: train without bad files, and say which were left out.

Files the setup scan finds bad never enter the file lists. A file that fails only when it is
decoded (e.g. truncated data after a good header) is found inside a DataLoader worker; the
item is then replaced by the next one that loads (same epoch, wrapping around), so every
batch keeps its size and the replacement is the same in every run.

Every skipped file is logged and appended as `<path>\\t<reason>` to `skipped_images.txt` in
the run folder. Workers are separate processes, so the file is the only record all of them
share: the main process counts the distinct files in it (`count_skipped`, read at the end of
every training epoch by `callbacks.skipped_images.SkippedImagesCallback`).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from bicyclegan_pl.data.errors import BadImageError, DatasetError
from bicyclegan_pl.data.notices import log

SKIPPED_IMAGES_FILE = "skipped_images.txt"


def _listed(listing: Path) -> set[str]:
    """The files a `skipped_images.txt` lists (none when there is no such file)."""
    try:
        lines = listing.read_text().splitlines()
    except FileNotFoundError:
        return set()
    return {line.split("\t", 1)[0] for line in lines if line.strip()}


def count_skipped(listing: Path) -> int:
    """Distinct files listed in a `skipped_images.txt` (0 when there is none)."""
    return len(_listed(listing))


class SkipLog:
    """Records skipped files: in the log (once per process) and, when `log_dir` is given,
    in its `skipped_images.txt` (once: a file another process listed is not added again)."""

    def __init__(self, log_dir: Path | str | None) -> None:
        self.listing = None if log_dir is None else Path(log_dir) / SKIPPED_IMAGES_FILE
        self._recorded: set[str] = set()

    def record(self, path: Path | str | None, reason: str) -> None:
        reason = " ".join(reason.split())  # one line per file
        key = str(path) if path is not None else reason
        if key in self._recorded:
            return
        self._recorded.add(key)
        log.warning("skipped image %s: %s", path if path is not None else "(unknown)", reason)
        if self.listing is None or key in _listed(self.listing):  # another process listed it
            return
        self.listing.parent.mkdir(parents=True, exist_ok=True)
        with self.listing.open("a") as listing:  # append: several processes write here
            listing.write(f"{path}\t{reason}\n")


class SkipBadItems(Dataset):
    """`dataset`, where an item whose image fails to load is replaced by the next item that
    loads: index + 1, + 2, ... within the same block of len(dataset) indices (a training
    index carries its epoch in `index // len`, see `unpaired.EpochIndexedSampler`)."""

    def __init__(self, dataset: Dataset, skipped: SkipLog) -> None:
        self.dataset = dataset
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> object:
        length = len(self.dataset)
        start = index - index % length  # the first index of this epoch's block
        for step in range(length):
            candidate = start + (index + step) % length
            try:
                return self.dataset[candidate]
            except BadImageError as error:
                self.skipped.record(error.path, str(error))
        raise DatasetError(
            f"All {length} items of the data set failed to load (data.on_bad_image=skip): no image is usable. "
            "See the skipped images in the log."
        )
