"""What a folder datamodule does about bad image files: its options and their effect.

Options (datamodule arguments, `conf/data/*.yaml`):
- `scan`: `auto` | true | false. Read every training and validation file's header at setup
  (`scan.scan_headers`, cached) and check it against the rules of `checks.ImageRules`.
  `auto` scans data sets of up to `AUTO_SCAN_LIMIT` files per domain.
- `on_bad_image`: `raise` (default) stops at the first bad file with its message; `skip`
  trains without bad files and lists them (`skipping`).
- `min_image_size`: the smallest side accepted (null: crop_size // 8).
- `log_dir`: where `skipped_images.txt` goes; null: the attached trainer's
  `default_root_dir` (the run folder in the configs), nowhere without a trainer (evaluation:
  the log only). Not set in the configs on purpose: the FID statistics cache is keyed by the
  data config, and a per-run path there would make every run recompute them.
- `cache_dir`: where header caches go when the dataset folder is not writable (null:
  $BICYCLEGAN_CACHE, else ~/.cache/bicyclegan_pl, as `paths.cache_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import Dataset

from bicyclegan_pl.data.checks import ImageRules
from bicyclegan_pl.data.errors import BadImageError, DatasetError
from bicyclegan_pl.data.images import FIX
from bicyclegan_pl.data.notices import log
from bicyclegan_pl.data.scan import Header, scan_headers
from bicyclegan_pl.data.skipping import SkipBadItems, SkipLog

if TYPE_CHECKING:
    import lightning as L

#: `scan: auto` scans up to this many files per domain: at most ~20 s the first time on a local
#: disk (>= 5,000 headers/s measured, see `scan`), ~2 s from the cache afterwards. Covers
#: edges2shoes (50k), GTA5 (25k) and every CycleGAN set; larger sets: scan=true.
AUTO_SCAN_LIMIT = 100_000

POLICIES = ("raise", "skip")


def _scan_option(scan: bool | str) -> bool | str:
    if isinstance(scan, bool) or scan == "auto":
        return scan
    if isinstance(scan, str) and scan.lower() in ("true", "false"):
        return scan.lower() == "true"
    raise ValueError(f"scan must be auto, true or false, got {scan!r}")


def header_problem(path: Path, header: Header, rules: ImageRules) -> BadImageError | None:
    """Why `rules` refuse the file with this header (None: accepted; may warn once)."""
    if header.error is not None:
        return BadImageError(f"Cannot read image {path}: {header.error}. {FIX}", path)
    try:
        rules.check(path, header.width, header.height)
    except BadImageError as error:
        return error
    return None


class ImageScreening:
    """Scans file lists at setup, applies `on_bad_image`, and wraps datasets for load-time
    skips. One per datamodule, told its trainer (`attach`) before it screens."""

    def __init__(
        self,
        crop_size: int,
        min_image_size: int | None = None,
        scan: bool | str = "auto",
        on_bad_image: str = "raise",
        log_dir: Path | str | None = None,
        cache_dir: Path | str | None = None,
    ) -> None:
        if on_bad_image not in POLICIES:
            raise ValueError(f"on_bad_image must be one of {POLICIES}, got {on_bad_image!r}")
        self.crop_size = crop_size
        self.min_image_size = min_image_size
        ImageRules(crop_size, min_image_size)  # validates min_image_size now, not at setup
        self.scan = _scan_option(scan)
        self.on_bad_image = on_bad_image
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.skipped = SkipLog(self.log_dir)
        self.progress = True

    def attach(self, trainer: L.Trainer | None) -> None:
        """Take the run folder and rank of the trainer about to use the data: skipped files
        are listed in its `default_root_dir` (unless a `log_dir` was given), and only rank 0
        shows the scan's progress bar."""
        if trainer is None:
            return
        if self.log_dir is None:
            self.skipped = SkipLog(trainer.default_root_dir)
        self.progress = trainer.is_global_zero

    def rules(self, ab: bool = False) -> ImageRules:
        return ImageRules(self.crop_size, self.min_image_size, ab=ab)

    def _scans(self, count: int) -> bool:
        return self.scan is True or (self.scan == "auto" and count <= AUTO_SCAN_LIMIT)

    def screen(self, lists: Sequence[list[Path]], ab: bool = False) -> list[list[Path]]:
        """`lists` (e.g. the training and validation files of one domain) without the files
        the scan finds bad (on_bad_image=skip); raises the first one's error (raise). The
        lists unchanged when no scan runs."""
        files = [path for paths in lists for path in paths]
        if not files or not self._scans(len(files)):
            if files and self.scan == "auto":
                log.info(
                    "no image scan: %d files exceed data.scan=auto's limit of %d; data.scan=true scans them once (cached)",
                    len(files), AUTO_SCAN_LIMIT,
                )
            return [list(paths) for paths in lists]
        folder = Path(os.path.commonpath(files))
        folder = folder.parent if folder in set(files) else folder
        headers = scan_headers(folder, files, self.cache_dir, self.progress)
        rules = self.rules(ab)
        problems = {path: problem for path in files if (problem := header_problem(path, headers[path], rules))}
        self._report(folder, headers)
        if problems and self.on_bad_image == "raise":
            first = next(iter(problems.values()))
            more = len(problems) - 1
            raise BadImageError(
                f"{first}" + (f"\n({more} more bad image file{'s' * (more > 1)} in {folder}.)" if more else ""), first.path
            )
        for path, problem in problems.items():
            self.skipped.record(path, str(problem))
        kept = [[path for path in paths if path not in problems] for paths in lists]
        for before, after in zip(lists, kept):
            if before and not after:
                raise DatasetError(
                    f"Every one of the {len(before)} images in {Path(os.path.commonpath(before))} is bad "
                    f"(data.on_bad_image=skip left none): {next(iter(problems.values()))}"
                )
        return kept

    @staticmethod
    def _report(folder: Path, headers: dict[Path, Header]) -> None:
        """One line on the files that load fine but are converted: 16-bit and alpha ones."""
        deep = sum(header.high_depth for header in headers.values())
        alpha = sum(header.alpha for header in headers.values())
        if deep or alpha:
            log.info(
                "%s: %d image(s) with more than 8 bits per channel (scaled to 8 bits), %d with an alpha channel or "
                "transparent colour (transparent pixels are composited on white, with a warning per file)",
                folder, deep, alpha,
            )

    def wrap(self, dataset: Dataset) -> Dataset:
        """`dataset` as it should be served: under `skip`, items whose file fails to load
        are replaced (`SkipBadItems`)."""
        return SkipBadItems(dataset, self.skipped) if self.on_bad_image == "skip" else dataset
