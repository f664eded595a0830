"""The size and shape rules an image file must meet, checked from its size alone.

Both the setup scan (from file headers) and the loaders (after decoding) apply them, so a
file is judged the same way whether the scan ran or not.

Size. Every image is resized to load_size x load_size before the crop, so a small file is
upscaled: a little is normal, much is a blur (a thumbnail or icon among photos).
- shorter side < crop_size / 2: a warning, once per file (upscaled more than 2x);
- shorter side < min_image_size: refused (`BadImageError`). The default, crop_size // 8,
  lets through everything a model can still learn from and stops what is certainly a
  wrong file: at a 256 px crop, images under 32 px (upscaled more than 8x).
For pix2pix AB files the size that counts is the half (one image of the pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bicyclegan_pl.data.errors import BadImageError
from bicyclegan_pl.data.images import FIX
from bicyclegan_pl.data.notices import warn_once


def default_min_size(crop_size: int) -> int:
    """The smallest side accepted when `min_image_size` is not given: crop_size // 8."""
    return max(1, crop_size // 8)


@dataclass(frozen=True)
class ImageRules:
    """What a dataset accepts: `ab` pairs (width = 2 x height) or single images, with
    `min_size` (None: `default_min_size(crop_size)`) as the smallest side."""

    crop_size: int
    min_size: int | None = None
    ab: bool = False

    def __post_init__(self) -> None:
        if self.min_size is not None and self.min_size < 1:
            raise ValueError(f"min_image_size must be >= 1 pixel (or null for crop_size // 8), got {self.min_size}")

    @property
    def smallest(self) -> int:
        return default_min_size(self.crop_size) if self.min_size is None else self.min_size

    def image_size(self, path: Path | str, width: int, height: int) -> tuple[int, int]:
        """(width, height) of one image of the file: the half of an AB pair. Raises
        `BadImageError` for an AB file that is not twice as wide as high."""
        if not self.ab:
            return width, height
        if width != 2 * height:
            raise BadImageError(
                f"{path} is {width}x{height} (width x height); an AB pair must be twice as wide as high "
                f"(A on the left half, B on the right half). {FIX}",
                path,
            )
        return height, height

    def check(self, path: Path | str, width: int, height: int) -> None:
        """Raise `BadImageError` for a file these rules refuse; warn (once) about one far
        smaller than the crop."""
        width, height = self.image_size(path, width, height)
        what = "each half of this AB pair" if self.ab else "it"
        side = min(width, height)
        if side < self.smallest:
            raise BadImageError(
                f"Image {path} is too small: {what} is {width}x{height} px, below data.min_image_size="
                f"{self.smallest} px (crop_size {self.crop_size}). {FIX} (or lower data.min_image_size)",
                path,
            )
        if 2 * side < self.crop_size:
            warn_once(
                path,
                "small",
                f"{path} is far smaller than the crop: {what} is {width}x{height} px for a crop of "
                f"{self.crop_size} px, so it is upscaled {self.crop_size / side:.1f}x or more.",
            )
