"""Unpaired image folders for CycleGAN-style systems (pix2pix repo `data/unaligned_dataset.py`).

Two independent lists of image files, domain A and domain B. Item `i` shows
`A = files_a[i % len(A)]` and a B image; an epoch has `max(len(A), len(B))` items. Each image
is resized to `load_size` x `load_size` (bicubic), then randomly cropped and flipped in
training (centre cropped in evaluation) and scaled to [-1, 1], each domain with its own crop
and flip, since nothing relates the two.

Which B an item shows. The reference draws `random.randint` on every access, so an A image
meets other B images every epoch. Here the training sampler (`EpochIndexedSampler`) yields
item `i` of epoch `e` as the index `e * len + i`, and the B of an index is a pure function of
(seed, index): consecutive indices are cut into blocks of `len(B)` and each block shows a
seeded random permutation of B. So B is random across items and epochs, like the reference's,
yet identical in every worker (persistent or not), DDP rank and resumed run, and every B image
is shown about equally often (independent draws skip about a third of B every epoch).
Evaluation pairs `files_b[i % len(B)]`, fixed.

Layouts (each resolved into train/validation file lists, `DomainSplits`):
- CycleGAN: `root/trainA`, `trainB` (+ `testA`, `testB`: validation when present).
- Kaggle "I'm Something of a Painter Myself": `root/monet_jpg` (A), `root/photo_jpg` (B).
- GTA5 `images/*.png` (A) and Cityscapes `leftImg8bit/{train,val}/<city>/*_leftImg8bit.png` (B).
- Any two folders; or one photo folder for colorization (`ColorizationDataset`).
A domain without its own evaluation folder gives up a fixed `holdout` fraction of its files
(`holdout_split`): chosen by a hash of each file's relative path, so the split does not
depend on the training seed and evaluations of different seeds stay comparable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from bicyclegan_pl.data.checks import ImageRules
from bicyclegan_pl.data.download import download_command
from bicyclegan_pl.data.errors import DatasetError
from bicyclegan_pl.data.images import IMAGE_EXTENSIONS, image_files, open_rgb
from bicyclegan_pl.data.resumable import ResumableSampler
from bicyclegan_pl.data.synthetic import item_generator
from bicyclegan_pl.data.transforms import paired_transform, to_image

GTA5_URL = "https://download.visinf.tu-darmstadt.de/data/from_games/"
CITYSCAPES_URL = "https://www.cityscapes-dataset.com"
KAGGLE_MONET = 'the Kaggle competition "gan-getting-started" (kaggle competitions download -c gan-getting-started)'


def _check_channels(**channels: int) -> None:
    for name, count in channels.items():
        if count not in (1, 3):
            raise ValueError(f"{name} must be 1 or 3, got {count}")


def _contents(folder: Path) -> str:
    """What `folder` holds, for error messages: its subfolder names, or why there are none."""
    if not folder.is_dir():
        return "the folder does not exist"
    names = sorted(f"{p.name}/" for p in folder.iterdir() if p.is_dir())
    return f"subfolders present: {', '.join(names)}" if names else "it has no subfolders"


def list_images(folder: Path | str, how_to_get: str) -> list[Path]:
    """Sorted image files under `folder`, searched recursively. Raises DatasetError naming
    the folder, followed by `how_to_get`, when it is missing or holds no image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(
            f"Image folder not found: {folder.resolve()} ({_contents(folder.parent)} in {folder.parent})\n{how_to_get}"
        )
    files = image_files(folder)
    if not files:
        raise DatasetError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder.resolve()}\n{how_to_get}")
    return files


def holdout_split(files: list[Path], root: Path | str, fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, validation) files: `round(fraction * n)` files, at least 1, go to validation.

    The files are ordered by the SHA-1 of their path relative to `root` (a fixed hash, no
    seed) and the last ones are held out, so the split is the same for every training seed,
    machine and dataset location. Both lists come back sorted by path."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {fraction}")
    root = Path(root)
    if len(files) < 2:
        raise DatasetError(
            f"{root} has {len(files)} image(s); holding out validation images needs at least 2 "
            "(or give a separate validation folder)"
        )
    count = min(len(files) - 1, max(1, round(fraction * len(files))))
    ranked = sorted(files, key=lambda path: (hashlib.sha1(path.relative_to(root).as_posix().encode()).hexdigest(), path))
    return sorted(ranked[:-count]), sorted(ranked[-count:])


@dataclass(frozen=True)
class DomainSplits:
    """Training and validation files of both domains."""

    train_a: list[Path]
    train_b: list[Path]
    val_a: list[Path]
    val_b: list[Path]


def domain_files(
    train_folder: Path, eval_folder: Path | None, holdout: float, how_to_get: str
) -> tuple[list[Path], list[Path]]:
    """(train, validation) files of one domain: `eval_folder` validates when given,
    otherwise the fixed holdout of `train_folder` does (and leaves training)."""
    train = list_images(train_folder, how_to_get)
    if eval_folder is not None:
        return train, list_images(eval_folder, how_to_get)
    return holdout_split(train, train_folder, holdout)


def folder_splits(
    root_a: Path | str, root_b: Path | str, val_a: Path | str | None, val_b: Path | str | None, holdout: float
) -> DomainSplits:
    """Any two image folders, with optional separate validation folders per domain."""
    how_to_get = "Point data.root_a / data.root_b (and optionally data.val_a / data.val_b) at folders of images."
    train_a, eval_a = domain_files(Path(root_a), None if val_a is None else Path(val_a), holdout, how_to_get)
    train_b, eval_b = domain_files(Path(root_b), None if val_b is None else Path(val_b), holdout, how_to_get)
    return DomainSplits(train_a, train_b, eval_a, eval_b)


def _cyclegan_how_to_get(root: Path, name: str) -> str:
    """How to obtain CycleGAN dataset `name` for a data root of `root`."""
    parent = root.parent if root.name == name else root
    return (
        f"Download it with:\n    {download_command(name, parent)}\n"
        f"(it creates {parent / name}/trainA, trainB, testA, testB; set data.root to that folder)"
    )


def monet2photo_splits(root: Path | str, holdout: float) -> DomainSplits:
    """monet2photo in the CycleGAN layout (trainA = Monet, trainB = photos, testA/testB
    validate when present) or the Kaggle layout (monet_jpg = A, photo_jpg = B); a domain
    without a test folder validates on its holdout."""
    root = Path(root)
    how_to_get = (
        f"{_cyclegan_how_to_get(root, 'monet2photo')}\nor unpack {KAGGLE_MONET} into {root} "
        "(monet_jpg/ and photo_jpg/)."
    )
    cyclegan = [root / "trainA", root / "trainB"]
    kaggle = [root / "monet_jpg", root / "photo_jpg"]
    if any(folder.is_dir() for folder in cyclegan):
        test_a, test_b = root / "testA", root / "testB"
        train_a, val_a = domain_files(cyclegan[0], test_a if test_a.is_dir() else None, holdout, how_to_get)
        train_b, val_b = domain_files(cyclegan[1], test_b if test_b.is_dir() else None, holdout, how_to_get)
        return DomainSplits(train_a, train_b, val_a, val_b)
    if any(folder.is_dir() for folder in kaggle):
        train_a, val_a = domain_files(kaggle[0], None, holdout, how_to_get)
        train_b, val_b = domain_files(kaggle[1], None, holdout, how_to_get)
        return DomainSplits(train_a, train_b, val_a, val_b)
    where = f"{root.resolve()} ({_contents(root)})" if root.is_dir() else f"{root.resolve()} (not found)"
    raise DatasetError(
        f"No monet2photo data in {where}: expected trainA/ and trainB/ (CycleGAN layout) "
        f"or monet_jpg/ and photo_jpg/ (Kaggle layout).\n{how_to_get}"
    )


def gta2cityscapes_splits(gta_root: Path | str, cityscapes_root: Path | str, holdout: float) -> DomainSplits:
    """A = GTA5 `gta_root/images/*.png` (validation: its holdout); B = Cityscapes
    `leftImg8bit/train/<city>/*_leftImg8bit.png`, validation on `leftImg8bit/val/`."""
    gta_root, cityscapes_root = Path(gta_root), Path(cityscapes_root)
    gta_how = (
        f"GTA5 ('Playing for Data') is downloaded from {GTA5_URL} (the image parts, e.g. 01_images.zip ...); "
        f"unpack them so that the PNGs are in {gta_root / 'images'}."
    )
    cityscapes_how = (
        f"Cityscapes needs a (free) account at {CITYSCAPES_URL}, so this tool cannot download it: log in, "
        f"download leftImg8bit_trainvaltest.zip and unzip it into {cityscapes_root} "
        "(giving leftImg8bit/train/<city>/*_leftImg8bit.png and leftImg8bit/val/...)."
    )
    if (cityscapes_root / "train").is_dir() and not (cityscapes_root / "leftImg8bit").is_dir():
        cityscapes_how += (
            f"\n{cityscapes_root} looks like the pix2pix 'cityscapes' (label|photo AB pairs in train/), "
            "which is a different dataset."
        )
    train_a, val_a = domain_files(gta_root / "images", None, holdout, gta_how)
    splits = {}
    for split in ("train", "val"):
        folder = cityscapes_root / "leftImg8bit" / split
        files = [p for p in list_images(folder, cityscapes_how) if p.name.endswith("_leftImg8bit.png")]
        if not files:
            raise DatasetError(f"No *_leftImg8bit.png images in {folder.resolve()}\n{cityscapes_how}")
        splits[split] = files
    return DomainSplits(train_a, splits["train"], val_a, splits["val"])


def colorization_splits(root: Path | str, holdout: float) -> tuple[list[Path], list[Path]]:
    """(train, validation) photos of one folder (recursive), validation = its holdout."""
    root = Path(root)
    how_to_get = (
        "Point data.root at any folder of colour photos, e.g. the photos of a CycleGAN set: "
        f"{download_command('monet2photo', root.parent)} then data.root={root.parent / 'monet2photo' / 'trainB'}."
    )
    return holdout_split(list_images(root, how_to_get), root, holdout)


def load_rgb(path: Path, rules: ImageRules) -> Image.Image:
    """The image at `path` as 8-bit RGB (`images.open_rgb`). Raises `BadImageError` naming
    the file when it is unreadable or `rules` refuse its size."""
    picture = open_rgb(path)
    rules.check(path, *picture.size)
    return picture


#: permutations kept per dataset copy: indices grow with the epoch, so the cache must not
CACHED_BLOCKS = 16


def _remember(cache: dict[int, torch.Tensor], block: int, value: torch.Tensor) -> None:
    if len(cache) >= CACHED_BLOCKS:
        cache.pop(next(iter(cache)))  # the oldest block: epochs only move forward
    cache[block] = value


class BalancedDraw:
    """Index `i` -> a random index in [0, count) that is a pure function of (seed, stream, i):
    block `i // count` is a seeded permutation of [0, count), so every index is drawn once
    per block. The latest permutations are cached (a few KB each)."""

    def __init__(self, count: int, seed: int, stream: str) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.count = count
        self.seed = seed
        self.stream = stream
        self._blocks: dict[int, torch.Tensor] = {}

    def __call__(self, index: int) -> int:
        block, position = divmod(int(index), self.count)
        if block not in self._blocks:
            generator = item_generator(self.seed, self.stream, block)
            _remember(self._blocks, block, torch.randperm(self.count, generator=generator))
        return int(self._blocks[block][position])


def _check_index(index: int, length: int, train: bool = False) -> int:
    """A valid index: [0, length), or any index >= 0 in training (`EpochIndexedSampler`)."""
    if index < 0 or (index >= length and not train):
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    return int(index)


class EpochIndexedSampler(ResumableSampler):
    """The shuffling training sampler, with the epoch carried in the indices it yields:
    item i of epoch e comes as `e * len(dataset) + i`. A training set that draws from the index
    (B in `UnpairedFolderDataset`, the partner photo in `ColorizationDataset`) draws anew every
    epoch, with nothing to synchronise: Lightning sets the sampler's epoch (also on resume)."""

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * len(self.dataset)
        return (index + offset for index in super().__iter__())


class UnpairedFolderDataset(Dataset):
    """Two unaligned lists of image files (CycleGAN "unaligned" mode).

    Items: {"A": (input_nc, crop, crop), "B": (output_nc, crop, crop), both float in
    [-1, 1], "index": int, "A_path": str, "B_path": str}. Length max(len(A), len(B)).
    `train`: random crop and flip per domain, B drawn by `BalancedDraw` from the index, which
    may run past the length to carry the epoch (see the module docstring); otherwise centre
    crop and B = files_b[index % len(B)]. `min_image_size`: the smallest side accepted
    (None: crop_size // 8, see `checks`).
    """

    def __init__(
        self,
        files_a: list[Path | str],
        files_b: list[Path | str],
        load_size: int = 286,
        crop_size: int = 256,
        train: bool = True,
        flip: bool = True,
        input_nc: int = 3,
        output_nc: int = 3,
        seed: int = 0,
        min_image_size: int | None = None,
    ) -> None:
        _check_channels(input_nc=input_nc, output_nc=output_nc)
        if not files_a or not files_b:
            raise ValueError(f"both domains need files, got {len(files_a)} A and {len(files_b)} B")
        self.files_a = [Path(path) for path in files_a]
        self.files_b = [Path(path) for path in files_b]
        self.train = train
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.seed = seed
        self.rules = ImageRules(crop_size, min_image_size)
        self.transform = paired_transform(load_size, crop_size, train=train, flip=flip)
        self._draw_b = BalancedDraw(len(self.files_b), seed, "unpaired/B")

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def b_index(self, index: int) -> int:
        """The position in `files_b` of item `index`'s B image."""
        index = _check_index(index, len(self), self.train)
        return self._draw_b(index) if self.train else index % len(self.files_b)

    def _image(self, path: Path, channels: int) -> torch.Tensor:
        return self.transform(to_image(load_rgb(path, self.rules), channels)).as_subclass(torch.Tensor)

    def __getitem__(self, index: int) -> dict[str, object]:
        index = _check_index(index, len(self), self.train)
        path_a = self.files_a[index % len(self) % len(self.files_a)]
        path_b = self.files_b[self.b_index(index)]
        return {
            "A": self._image(path_a, self.input_nc),
            "B": self._image(path_b, self.output_nc),
            "index": index % len(self),
            "A_path": str(path_a),
            "B_path": str(path_b),
        }


class ColorizationDataset(Dataset):
    """Colorization as unpaired translation (seed 004), from ONE folder of colour photos.

    A = the ITU-R 601 luma of photo `index` (torchvision `rgb_to_grayscale`; 1 channel, or
    replicated to 3 when input_nc=3); B = a colour photo. In training B is a DIFFERENT photo,
    drawn as a seeded random cyclic derangement (item i shows the photo after i in a random
    cyclic order: never itself, every photo once per epoch, a pure function of (seed, index),
    a new order every epoch under `EpochIndexedSampler`), so the model never sees the pair, as
    CycleGAN trains it. In evaluation B is photo
    `index` itself, the ground-truth colours of A, which paired metrics can use.
    Items as `UnpairedFolderDataset`'s. A and B are cropped and flipped independently.
    `min_image_size`: the smallest side accepted (None: crop_size // 8, see `checks`).
    """

    def __init__(
        self,
        files: list[Path | str],
        load_size: int = 286,
        crop_size: int = 256,
        train: bool = True,
        flip: bool = True,
        input_nc: int = 1,
        output_nc: int = 3,
        seed: int = 0,
        min_image_size: int | None = None,
    ) -> None:
        _check_channels(input_nc=input_nc)
        if output_nc != 3:
            raise ValueError(f"colorization targets are colour photos: output_nc must be 3, got {output_nc}")
        if train and len(files) < 2:
            raise ValueError(f"colorization training pairs each photo with another one: need >= 2 files, got {len(files)}")
        if not files:
            raise ValueError("colorization needs at least one file")
        self.files = [Path(path) for path in files]
        self.train = train
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.seed = seed
        self.rules = ImageRules(crop_size, min_image_size)
        self.transform = paired_transform(load_size, crop_size, train=train, flip=flip)
        self._next: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def b_index(self, index: int) -> int:
        """The position in `files` of item `index`'s colour photo B."""
        index = _check_index(index, len(self), self.train)
        if not self.train:
            return index
        block, item = divmod(index, len(self.files))
        if block not in self._next:
            order = torch.randperm(len(self.files), generator=item_generator(self.seed, "colorization/B", block))
            following = torch.empty_like(order)
            following[order] = order.roll(-1)  # the photo after each one in the random cyclic order
            _remember(self._next, block, following)
        return int(self._next[block][item])

    def __getitem__(self, index: int) -> dict[str, object]:
        index = _check_index(index, len(self), self.train)
        path_a, path_b = self.files[index % len(self)], self.files[self.b_index(index)]
        gray = TF.rgb_to_grayscale(to_image(load_rgb(path_a, self.rules), 3), num_output_channels=self.input_nc)
        return {
            "A": self.transform(gray).as_subclass(torch.Tensor),
            "B": self.transform(to_image(load_rgb(path_b, self.rules), 3)).as_subclass(torch.Tensor),
            "index": index % len(self),
            "A_path": str(path_a),
            "B_path": str(path_b),
        }
