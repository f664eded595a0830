"""Prompt and image arguments of the text commands (generate, edit): lists from the command line,
image files and folders, with messages that say what to pass instead of a traceback."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import ListConfig
from torch import Tensor

from bicyclegan_pl.data.errors import BadImageError
from bicyclegan_pl.data.images import IMAGE_EXTENSIONS, image_files, open_rgb
from bicyclegan_pl.data.transforms import paired_transform, to_image
from bicyclegan_pl.errors import UserError


class TextInputError(UserError, ValueError):
    """A prompt or input image of a text command that cannot be used."""


def as_prompts(value: Any, key: str) -> list[str]:
    """A text or a list of texts (``prompt='[a red star,a blue ellipse]'``), none of them empty."""
    items = [str(item) for item in value] if isinstance(value, (list, tuple, ListConfig)) else [str(value)]
    if not items or any(not item.strip() for item in items):
        raise TextInputError(f"{key}={value!r}: give a text, or a list of texts like {key}='[a red star,a blue ellipse]'.")
    return items


def image_inputs(path: str | Path, crop_size: int, channels: int = 3) -> tuple[list[Path], Tensor]:
    """The image at ``path``, or every image of the folder (sorted), as (N, C, crop, crop) in [-1, 1]."""
    path = Path(path).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = image_files(path, recursive=False)
        if not files:
            raise TextInputError(f"image={path}: the folder holds no image ({', '.join(IMAGE_EXTENSIONS)}).")
    else:
        raise TextInputError(f"image={path}: no such file or folder.")
    transform = paired_transform(crop_size, crop_size, train=False)
    images = []
    for file in files:
        try:
            images.append(transform(to_image(open_rgb(file), channels)))
        except BadImageError as error:
            raise TextInputError(f"image {file} cannot be read as an image ({error.__cause__ or error}).") from error
    return files, torch.stack(images)
