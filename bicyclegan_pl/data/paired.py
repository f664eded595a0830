"""Paired folder dataset in the pix2pix single-file "AB" format.

Layout (as `python -m bicyclegan_pl.data.download NAME` unpacks it):
`root/train/*.jpg`, `root/val/*.jpg` (some sets: `root/test/`), each file one image of width
2H holding A on the left half and B on the right half (pix2pix `data/aligned_dataset.py`).
`direction: BtoA` swaps the roles, so "A" is always the model's input; `input_nc` and
`output_nc` then apply to the input and the target.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from bicyclegan_pl.data.checks import ImageRules
from bicyclegan_pl.data.download import DATASETS, download_command
from bicyclegan_pl.data.errors import DatasetError
from bicyclegan_pl.data.images import IMAGE_EXTENSIONS, image_files, open_rgb
from bicyclegan_pl.data.transforms import paired_transform, to_image

DIRECTIONS = ("AtoB", "BtoA")


def _how_to_get(root: Path) -> str:
    """The sentence telling the user how to obtain the dataset expected at `root`."""
    if root.name in DATASETS:
        return f"Download it with:\n    {download_command(root.name, root.parent)}"
    return (
        "Expected the pix2pix 'AB' layout (root/train/*.jpg, root/val/*.jpg, each A|B side by side). "
        f"Official datasets ({', '.join(DATASETS)}) download with:\n    {download_command('NAME', root.parent)}"
    )


def find_images(root: Path | str, split: str) -> list[Path]:
    """Sorted image files under `root/split` (recursively, like pix2pix `make_dataset`).
    Raises DatasetError naming the folder when it is missing or holds no image."""
    root = Path(root)
    folder = root / split
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root.resolve()}\n{_how_to_get(root)}")
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DatasetError(
            f"Split folder not found: {folder.resolve()} (subfolders present: {present or 'none'})\n{_how_to_get(root)}"
        )
    files = image_files(folder)
    if not files:
        raise DatasetError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder.resolve()}\n{_how_to_get(root)}"
        )
    return files


def load_ab(path: Path, rules: ImageRules) -> tuple[Image.Image, Image.Image]:
    """The left (A) and right (B) halves of an AB file, as RGB PIL images. Raises
    `BadImageError` naming the file when it is unreadable or `rules` refuse its shape."""
    picture = open_rgb(path)
    rules.check(path, *picture.size)
    width, height = picture.size
    return picture.crop((0, 0, height, height)), picture.crop((height, 0, width, height))


class PairedFolderDataset(Dataset):
    """pix2pix AB images of `root/split`.

    Items: {"A": (input_nc, crop, crop), "B": (output_nc, crop, crop), both float in
    [-1, 1], "path": str}. `train` turns on the random crop and flip (identical for A and
    B); otherwise images are resized and centre cropped. `files` replaces the search of
    `root/split` (the datamodule passes the files its scan kept); `min_image_size` is the
    smallest half-image side accepted (None: crop_size // 8, see `checks`).
    """

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        direction: str = "AtoB",
        load_size: int = 286,
        crop_size: int = 256,
        input_nc: int = 3,
        output_nc: int = 3,
        train: bool = True,
        flip: bool = True,
        min_image_size: int | None = None,
        files: list[Path] | None = None,
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        for name, channels in (("input_nc", input_nc), ("output_nc", output_nc)):
            if channels not in (1, 3):
                raise ValueError(f"{name} must be 1 or 3, got {channels}")
        self.root = Path(root)
        self.split = split
        self.direction = direction
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.paths = find_images(self.root, split) if files is None else [Path(path) for path in files]
        self.rules = ImageRules(crop_size, min_image_size, ab=True)
        self.transform = paired_transform(load_size, crop_size, train=train, flip=flip)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, object]:
        path = self.paths[index]
        left, right = load_ab(path, self.rules)
        source, target = (left, right) if self.direction == "AtoB" else (right, left)
        a, b = self.transform((to_image(source, self.input_nc), to_image(target, self.output_nc)))
        # plain tensors out, like every other dataset of the package
        return {"A": a.as_subclass(torch.Tensor), "B": b.as_subclass(torch.Tensor), "path": str(path)}
