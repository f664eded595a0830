"""LightningDataModules: synthetic paired (the default), synthetic unpaired, paired folders,
unpaired folders (any two folders, monet2photo, GTA5 -> Cityscapes, colorization).

The training loader always uses a `DistributedSampler` (also on one process), built from the
attached trainer's world size and rank. Its order is a pure function of (seed, epoch):
Lightning calls `set_epoch` on it every epoch and keeps it rather than inserting its own, and
the loader's position travels in checkpoints (`data/resumable.py`), so a run resumed from a
checkpoint, even one taken in the middle of an epoch, sees the same batches as an
uninterrupted one, and DDP ranks split every epoch into disjoint shards. Partial batches are
dropped, as BicycleGAN splits every batch in two halves and skips incomplete ones. Validation is sequential and fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from bicyclegan_pl.data.appearance import appearance_palette
from bicyclegan_pl.data.captioned import SyntheticObjectDataset
from bicyclegan_pl.data.errors import DatasetError
from bicyclegan_pl.data.layouts import (
    DomainFiles,
    GTA2Cityscapes,
    Monet2Photo,
    PhotoFolder,
    TwoFolders,
    UnpairedLayout,
)
from bicyclegan_pl.data.paired import PairedFolderDataset, find_images
from bicyclegan_pl.data.resumable import ResumableDataLoader, ResumableSampler
from bicyclegan_pl.data.screening import ImageScreening
from bicyclegan_pl.data.synthetic import SyntheticPairedDataset, SyntheticUnpairedDataset
from bicyclegan_pl.data.unpaired import DomainSplits, EpochIndexedSampler

# Validation is split into at least this many batches when the set is small, so per-batch
# hooks (sample grids, metrics) run a few times even on a 4-item val set.
MIN_VAL_BATCHES = 4


def _first(dataset: Dataset, count: int | None) -> Dataset:
    """The first `count` items of `dataset` (all of them for None): `val_size`."""
    return dataset if count is None else Subset(dataset, range(min(count, len(dataset))))


class _TranslationDataModule(L.LightningDataModule):
    """Loader logic shared by every data module; subclasses build `train_set`/`val_set`."""

    #: the training sampler's class (unpaired folders: the epoch travels in the indices)
    sampler_type: type[ResumableSampler] = ResumableSampler
    #: (K, 3) colours in [-1, 1] of the K true appearances of data with known ground truth (the
    #: synthetic paired set): the evaluation suite's mode coverage and mask IoU need it; None elsewhere
    palette: torch.Tensor | None = None
    #: (K, 3) colours of data whose inputs come with their true mask and colour (the synthetic
    #: unpaired set: "mask_A", "colour_A", ...): the suite then measures what translations keep
    source_palette: torch.Tensor | None = None

    def __init__(self, batch_size: int, num_workers: int, seed: int, input_nc: int, output_nc: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _build(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def check_source(self) -> None:
        """Raise the `DatasetError` that names the folder looked at and the download command when the
        data is not where the config points. Entry points call it before any logger starts a run
        (a W&B run for a training that cannot begin); generated data has nothing to check."""

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set = self._build()

    def _replicas(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer, (1, 0) without one."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def _pin_memory(self) -> bool:
        if self.trainer is not None:
            return self.trainer.strategy.root_device.type == "cuda"
        return torch.cuda.is_available()

    def train_sampler(self) -> ResumableSampler:
        """The shuffling sampler of this process: order = f(seed, epoch, rank)."""
        self.setup("fit")
        world_size, rank = self._replicas()
        if len(self.train_set) < self.batch_size * world_size:
            raise DatasetError(
                f"The training set has {len(self.train_set)} items, fewer than one batch of {self.batch_size} "
                f"on each of {world_size} process(es); lower data.batch_size or add data."
            )
        return self.sampler_type(
            self.train_set, batch_size=self.batch_size, num_replicas=world_size, rank=rank, seed=self.seed
        )

    def _training_position(self) -> tuple[int, bool]:
        """(batches of the current epoch trained, epoch complete), for mid-epoch checkpoints."""
        trainer = self.trainer
        if trainer is None:
            return 0, True
        # No public Trainer property counts the batches of the current epoch; the fit loop's
        # progress tracker (public attributes, the counter Lightning restores on resume) does.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return done, done >= trainer.num_training_batches

    def train_dataloader(self) -> DataLoader:
        sampler = self.train_sampler()
        return ResumableDataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._pin_memory(),
            position=self._training_position,
        )

    def val_batch_size(self) -> int:
        """batch_size, reduced for small val sets so validation has >= MIN_VAL_BATCHES batches."""
        self.setup("validate")
        return max(1, min(self.batch_size, len(self.val_set) // MIN_VAL_BATCHES))

    def val_dataloader(self) -> DataLoader:
        batch_size = self.val_batch_size()
        return DataLoader(
            self.val_set,
            batch_size=batch_size,
            shuffle=False,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._pin_memory(),
        )


class SyntheticPairedDataModule(_TranslationDataModule):
    """The embedded default: outline -> one of `num_appearances` colour fills, generated on
    the fly at `crop_size` pixels. Train and val are disjoint; val is fixed for a seed.
    `palette` ((K, 3) in [-1, 1]) is what `appearance.classify_appearance` compares with."""

    def __init__(
        self,
        crop_size: int = 64,
        input_nc: int = 1,
        output_nc: int = 3,
        num_appearances: int = 4,
        train_size: int = 2000,
        val_size: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        if output_nc != 3:
            raise ValueError(f"the synthetic targets are colour images: output_nc must be 3, got {output_nc}")
        super().__init__(batch_size, num_workers, seed, input_nc, output_nc)
        self.save_hyperparameters()
        self.crop_size = crop_size
        self.num_appearances = num_appearances
        self.palette = appearance_palette(num_appearances)
        self.train_size = train_size
        self.val_size = val_size

    def _build(self) -> tuple[Dataset, Dataset]:
        common = dict(image_size=self.crop_size, seed=self.seed, num_appearances=self.num_appearances, input_nc=self.input_nc)
        return (
            SyntheticPairedDataset(self.train_size, split="train", **common),
            SyntheticPairedDataset(self.val_size, split="val", **common),
        )


class SyntheticUnpairedDataModule(_TranslationDataModule):
    """Unpaired synthetic domains for CycleGAN-style systems: A = flat fill, B = striped
    fill with a dark outline, drawn independently. Both domains are RGB."""

    def __init__(
        self,
        crop_size: int = 64,
        input_nc: int = 3,
        output_nc: int = 3,
        num_appearances: int = 4,
        train_size: int = 2000,
        val_size: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        if (input_nc, output_nc) != (3, 3):
            raise ValueError(f"both synthetic unpaired domains are RGB: need input_nc=output_nc=3, got {input_nc}, {output_nc}")
        super().__init__(batch_size, num_workers, seed, input_nc, output_nc)
        self.save_hyperparameters()
        self.crop_size = crop_size
        self.num_appearances = num_appearances
        self.source_palette = appearance_palette(num_appearances)
        self.train_size = train_size
        self.val_size = val_size

    def _build(self) -> tuple[Dataset, Dataset]:
        common = dict(image_size=self.crop_size, seed=self.seed, num_appearances=self.num_appearances)
        return (
            SyntheticUnpairedDataset(self.train_size, split="train", **common),
            SyntheticUnpairedDataset(self.val_size, split="val", **common),
        )


class SyntheticObjectsDataModule(_TranslationDataModule):
    """Single images of the synthetic world ("B"), one object of any palette colour and shape
    family, plain or striped, with its caption and attributes (``data.captioned``): what the
    unconditional GANs learn to generate and CLIP2GAN learns to reconstruct. Drawn at
    ``crop_size`` directly (``render_sizes``: other sizes, resized), without pixel noise unless asked."""

    def __init__(
        self,
        crop_size: int = 32,
        output_nc: int = 3,
        num_colours: int = 8,
        fills: Sequence[str] = ("plain", "striped"),
        render_sizes: Sequence[int] | None = None,
        noise: float = 0.0,
        train_size: int = 20000,
        val_size: int = 256,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        if output_nc != 3:
            raise ValueError(f"the synthetic objects are colour images: output_nc must be 3, got {output_nc}")
        super().__init__(batch_size, num_workers, seed, output_nc, output_nc)
        self.save_hyperparameters()
        self.options = dict(
            image_size=crop_size, render_sizes=tuple(render_sizes or (crop_size,)), seed=seed,
            num_colours=num_colours, fills=tuple(fills), noise=noise,
        )
        self.train_size = train_size
        self.val_size = val_size

    def _build(self) -> tuple[Dataset, Dataset]:
        return (
            SyntheticObjectDataset(self.train_size, split="train", **self.options),
            SyntheticObjectDataset(self.val_size, split="val", **self.options),
        )


class PairedFolderDataModule(_TranslationDataModule):
    """pix2pix AB folders: `root/train` for training, `root/val` (or `root/test` when there
    is no val) for validation. Options read like pix2pix's: direction, load_size,
    crop_size, input_nc, output_nc, flip (pix2pix `--no_flip` is `flip: false`).
    `val_size` keeps only the first (sorted) val files, to bound validation time.
    Bad files: `min_image_size`, `scan`, `on_bad_image`, `log_dir`, `cache_dir` (see
    `screening`); the size that counts is that of a half (one image of the pair)."""

    def __init__(
        self,
        root: str | Path,
        direction: str = "AtoB",
        load_size: int = 286,
        crop_size: int = 256,
        input_nc: int = 3,
        output_nc: int = 3,
        batch_size: int = 1,
        num_workers: int = 4,
        seed: int = 0,
        flip: bool = True,
        val_split: str | None = None,
        val_size: int | None = None,
        min_image_size: int | None = None,
        scan: bool | str = "auto",
        on_bad_image: str = "raise",
        log_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, input_nc, output_nc)
        self.save_hyperparameters()
        self.screening = ImageScreening(crop_size, min_image_size, scan, on_bad_image, log_dir, cache_dir)
        self.root = Path(root)
        self.direction = direction
        self.load_size = load_size
        self.crop_size = crop_size
        self.flip = flip
        self.val_split = val_split
        self.val_size = val_size

    def _eval_split(self) -> str:
        if self.val_split is not None:
            return self.val_split
        # Sets without val/ (e.g. some facades copies) validate on test/; if neither
        # exists, asking for "val" gives the error that names the folder looked at.
        return next((split for split in ("val", "test") if (self.root / split).is_dir()), "val")

    def check_source(self) -> None:
        find_images(self.root, "train")
        find_images(self.root, self._eval_split())

    def _build(self) -> tuple[Dataset, Dataset]:
        common = dict(
            root=self.root,
            direction=self.direction,
            load_size=self.load_size,
            crop_size=self.crop_size,
            input_nc=self.input_nc,
            output_nc=self.output_nc,
            min_image_size=self.screening.min_image_size,
        )
        split = self._eval_split()
        self.screening.attach(self.trainer)
        listed = [find_images(self.root, "train"), find_images(self.root, split)]
        train_files, val_files = self.screening.screen(listed, ab=True)
        train = PairedFolderDataset(split="train", train=True, flip=self.flip, files=train_files, **common)
        val = PairedFolderDataset(split=split, train=False, files=val_files, **common)
        return self.screening.wrap(train), _first(self.screening.wrap(val), self.val_size)


class UnpairedDataModule(_TranslationDataModule):
    """Unpaired image folders: the files that `layout` finds (`data/layouts.py`: two folders,
    monet2photo, GTA5 -> Cityscapes, a photo folder for colorization), served by the layout's
    dataset class. The classes below bind one layout each to a `conf/data/*.yaml`.

    Options read like the CycleGAN reference's: load_size 286 -> crop_size 256, flip
    (`--no_flip` is `flip: false`), batch_size 1. A domain without its own evaluation folder
    validates on a fixed `holdout` fraction of its files, removed from training and the
    same for every seed. `val_size` keeps only the first N validation items. Training pairs
    change every epoch (`EpochIndexedSampler`). Bad files: `min_image_size`, `scan`,
    `on_bad_image`, `log_dir`, `cache_dir` (see `screening`)."""

    sampler_type = EpochIndexedSampler

    def __init__(
        self,
        layout: UnpairedLayout,
        load_size: int = 286,
        crop_size: int = 256,
        input_nc: int = 3,
        output_nc: int = 3,
        batch_size: int = 1,
        num_workers: int = 4,
        seed: int = 0,
        flip: bool = True,
        holdout: float = 0.1,
        val_size: int | None = None,
        min_image_size: int | None = None,
        scan: bool | str = "auto",
        on_bad_image: str = "raise",
        log_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, input_nc, output_nc)
        # The layout object is not a loggable value; the binding subclasses' own arguments
        # (root, gta_root, ...) are saved with these, as Lightning collects every __init__ up the chain.
        self.save_hyperparameters(ignore=["layout"])
        self.screening = ImageScreening(crop_size, min_image_size, scan, on_bad_image, log_dir, cache_dir)
        if crop_size > load_size:
            raise ValueError(f"crop_size ({crop_size}) must not exceed load_size ({load_size})")
        if not 0.0 < holdout < 1.0:
            raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}")
        self.layout = layout
        self.load_size = load_size
        self.crop_size = crop_size
        self.flip = flip
        self.holdout = holdout
        self.val_size = val_size
        #: each domain's (training, validation) files after setup, without those the scan refused
        self.files: list[DomainFiles] | None = None

    @property
    def splits(self) -> DomainSplits | None:
        """The files of A (the first domain) and B (the last) after setup; None before."""
        if self.files is None:
            return None
        first, last = self.files[0], self.files[-1]
        return DomainSplits(first.train, last.train, first.val, last.val)

    def check_source(self) -> None:
        self.layout.domains(self.holdout)

    def _build(self) -> tuple[Dataset, Dataset]:
        self.screening.attach(self.trainer)
        # one domain at a time: each domain's files share a folder, and its header cache
        self.files = [DomainFiles(*self.screening.screen(domain)) for domain in self.layout.domains(self.holdout)]
        common = dict(
            load_size=self.load_size,
            crop_size=self.crop_size,
            input_nc=self.input_nc,
            output_nc=self.output_nc,
            seed=self.seed,
            min_image_size=self.screening.min_image_size,
        )
        dataset = self.layout.dataset
        train = dataset(*(domain.train for domain in self.files), train=True, flip=self.flip, **common)
        val = dataset(*(domain.val for domain in self.files), train=False, **common)
        return self.screening.wrap(train), _first(self.screening.wrap(val), self.val_size)


class UnpairedFolderDataModule(UnpairedDataModule):
    """`data=unpaired_folders`: the `TwoFolders` layout (any two folders; `val_a` / `val_b`
    optional). Other options: `UnpairedDataModule`."""

    def __init__(
        self,
        root_a: str | Path,
        root_b: str | Path,
        val_a: str | Path | None = None,
        val_b: str | Path | None = None,
        **options: Any,
    ) -> None:
        self.root_a, self.root_b = Path(root_a), Path(root_b)
        self.val_a = None if val_a is None else Path(val_a)
        self.val_b = None if val_b is None else Path(val_b)
        super().__init__(TwoFolders(self.root_a, self.root_b, self.val_a, self.val_b), **options)


class Monet2PhotoDataModule(UnpairedDataModule):
    """`data=monet2photo`: the `Monet2Photo` layout (CycleGAN `trainA/ trainB/ [testA/ testB/]`
    or Kaggle `monet_jpg/ photo_jpg/` under `root`). Other options: `UnpairedDataModule`."""

    def __init__(self, root: str | Path, **options: Any) -> None:
        self.root = Path(root)
        super().__init__(Monet2Photo(self.root), **options)


class GTA2CityscapesDataModule(UnpairedDataModule):
    """`data=gta2cityscapes`: the `GTA2Cityscapes` layout. Both domains are resized to
    load_size x load_size, as the reference does. Other options: `UnpairedDataModule`."""

    def __init__(self, gta_root: str | Path, cityscapes_root: str | Path, **options: Any) -> None:
        self.gta_root, self.cityscapes_root = Path(gta_root), Path(cityscapes_root)
        super().__init__(GTA2Cityscapes(self.gta_root, self.cityscapes_root), **options)


class ColorizationDataModule(UnpairedDataModule):
    """`data=colorization` (seed 004): the `PhotoFolder` layout. A = grayscale photo
    (input_nc 1, or 3 replicated), B = a different colour photo in training and the photo's
    own colours in validation (`ColorizationDataset`). Validation = holdout."""

    def __init__(self, root: str | Path, input_nc: int = 1, output_nc: int = 3, **options: Any) -> None:
        if output_nc != 3:
            raise ValueError(f"colorization targets are colour photos: output_nc must be 3, got {output_nc}")
        self.root = Path(root)
        super().__init__(PhotoFolder(self.root), input_nc=input_nc, output_nc=output_nc, **options)

    @property
    def photos(self) -> DomainFiles | None:
        """(training, validation) photos after setup; None before."""
        return None if self.files is None else self.files[0]
