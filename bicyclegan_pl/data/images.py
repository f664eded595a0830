"""Image files: finding them (`image_files`, by extension) and decoding them to 8-bit RGB
(`open_rgb`), the one place the folder datasets and the guide command do either.

PIL's `convert("RGB")` is right for 8-bit files (RGB, L, 1, P, CMYK, YCbCr: silent here too)
but silently wrong for two kinds of files found in real datasets:
- 16-bit grayscale (PNG/TIFF, PIL mode 'I;16') and 32-bit 'I' / float 'F' files: it clips
  every value above 255, so a 16-bit image turns almost pure white. They are scaled to 8 bits
  instead (16-bit: value / 257, so a file saved as 8-bit * 257 gives back the 8-bit picture).
  16-bit RGB(A) PNGs already open as 8-bit 'RGB'/'RGBA' (PIL keeps the high byte).
- transparency (RGBA, LA, PA, or a palette / colour key with a transparent entry): it drops
  alpha and keeps whatever colour the transparent pixels happen to store (often black).
  Transparent pixels are composited on white instead (the background of product photos and
  edge maps), with a warning once per file; a fully opaque alpha channel is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bicyclegan_pl.data.errors import BadImageError
from bicyclegan_pl.data.notices import warn_once

#: the file name extensions (any case) read as images
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")

#: modes whose values do not fit in 8 bits (scaled by `to_8bit`)
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")

#: what reading a file can raise for a corrupt, truncated or unsupported file
READ_ERRORS = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError)

FIX = "Replace or delete the file, or set data.on_bad_image=skip to train without it."


def image_files(folder: Path | str, recursive: bool = True) -> list[Path]:
    """The image files (`IMAGE_EXTENSIONS`) in `folder`, and in its subfolders when
    `recursive` (like pix2pix `make_dataset`), sorted by path. Empty when there are none or the
    folder does not exist: each caller says what is missing in its own words."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(path for path in candidates if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())


def to_8bit(picture: Image.Image, path: Path | str) -> Image.Image:
    """A high-depth grayscale picture as mode 'L'. 16-bit modes: value / 257 (full 16-bit
    range). 'I' and 'F' do not say their range, so the smallest usual one that holds the
    values is taken: [0, 1] (float only), [0, 255] or [0, 65535]; other values are refused."""
    values = np.asarray(picture, dtype=np.float64)
    if picture.mode.startswith("I;16"):
        full = 65535.0
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if not np.isfinite(values).all() or low < 0 or high > 65535:
            raise BadImageError(
                f"Cannot convert image {path} to 8 bits: mode {picture.mode} with values {low:g}..{high:g} fits "
                f"neither the 8-bit nor the 16-bit range. Save it as an 8- or 16-bit PNG. {FIX}",
                path,
            )
        full = 1.0 if picture.mode == "F" and high <= 1.0 else 255.0 if high <= 255 else 65535.0
    scaled = np.rint(values * (255.0 / full)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(scaled)  # uint8 (H, W): mode L


def on_white(picture: Image.Image, path: Path | str) -> Image.Image:
    """A picture that may have transparency, as RGB: dropped silently when every pixel is
    opaque, otherwise composited on white with a warning (once per file and process)."""
    rgba = picture.convert("RGBA")
    lowest_alpha = rgba.getchannel("A").getextrema()[0]
    if lowest_alpha == 255:
        return rgba.convert("RGB")
    warn_once(
        path,
        "transparent",
        f"{path} has transparent pixels (mode {picture.mode}): they are composited on a white background.",
    )
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def as_rgb(picture: Image.Image, path: Path | str) -> Image.Image:
    """A decoded picture of any mode as 8-bit RGB (see the module docstring)."""
    if picture.mode in HIGH_DEPTH_MODES:
        picture = to_8bit(picture, path)
    if picture.has_transparency_data:
        return on_white(picture, path)
    return picture.convert("RGB")


def open_rgb(path: Path | str) -> Image.Image:
    """The image file at `path` fully decoded as 8-bit RGB. Raises `BadImageError` naming
    the file when it cannot be read or converted."""
    try:
        with Image.open(path) as picture:
            picture.load()  # the full decode, inside the try: truncated data fails here
            return as_rgb(picture, path)
    except READ_ERRORS as error:
        raise BadImageError(f"Cannot read image {path}: {error}. {FIX}", path) from error
