"""On-disk layouts of unpaired datasets: where each domain's training and validation files are.

A layout is a small frozen object that `datamodules.UnpairedDataModule` takes. It says two
things: `domains(holdout)`, the (training, validation) files of each domain, and `dataset`,
the dataset class that serves them, built as `dataset(*one file list per domain, train=...,
load_size=..., ...)`. The folder rules and their error messages are the split functions of
`unpaired` (each names the folder it looked at and how to get the data).

A new layout is one more such class; it is used from a config as
`_target_: bicyclegan_pl.data.datamodules.UnpairedDataModule` with
`layout: {_target_: <your class>, ...}`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

from torch.utils.data import Dataset

from bicyclegan_pl.data.unpaired import (
    ColorizationDataset,
    DomainSplits,
    UnpairedFolderDataset,
    colorization_splits,
    folder_splits,
    gta2cityscapes_splits,
    monet2photo_splits,
)


class DomainFiles(NamedTuple):
    """The training and validation files of one domain."""

    train: list[Path]
    val: list[Path]


def by_domain(splits: DomainSplits) -> list[DomainFiles]:
    """`splits` as [A's files, B's files]."""
    return [DomainFiles(splits.train_a, splits.val_a), DomainFiles(splits.train_b, splits.val_b)]


class UnpairedLayout(ABC):
    """Where an unpaired dataset's files are, and which dataset class pairs them up."""

    #: built as `dataset(*training files of each domain, train=True, ...)`, likewise for validation
    dataset: ClassVar[type[Dataset]] = UnpairedFolderDataset

    @abstractmethod
    def domains(self, holdout: float) -> list[DomainFiles]:
        """(training, validation) files of each domain, in the order `dataset` takes them. A
        domain without its own validation folder gives up its fixed `holdout` fraction."""


@dataclass(frozen=True)
class TwoFolders(UnpairedLayout):
    """Any two image folders (searched recursively) as domains A and B; `val_a` / `val_b`
    are optional evaluation folders (otherwise the domain's holdout validates)."""

    root_a: Path | str
    root_b: Path | str
    val_a: Path | str | None = None
    val_b: Path | str | None = None

    def domains(self, holdout: float) -> list[DomainFiles]:
        return by_domain(folder_splits(self.root_a, self.root_b, self.val_a, self.val_b, holdout))


@dataclass(frozen=True)
class Monet2Photo(UnpairedLayout):
    """A = Monet paintings, B = photos, in the CycleGAN layout (`root/trainA`, `trainB`;
    `testA`, `testB` validate when present) or the Kaggle one (`root/monet_jpg`, `photo_jpg`)."""

    root: Path | str

    def domains(self, holdout: float) -> list[DomainFiles]:
        return by_domain(monet2photo_splits(self.root, holdout))


@dataclass(frozen=True)
class GTA2Cityscapes(UnpairedLayout):
    """A = GTA5 renderings (`gta_root/images/*.png`, validation = holdout), B = Cityscapes
    photos (`cityscapes_root/leftImg8bit/train/<city>/*_leftImg8bit.png`, validation on
    `leftImg8bit/val/`)."""

    gta_root: Path | str
    cityscapes_root: Path | str

    def domains(self, holdout: float) -> list[DomainFiles]:
        return by_domain(gta2cityscapes_splits(self.gta_root, self.cityscapes_root, holdout))


@dataclass(frozen=True)
class PhotoFolder(UnpairedLayout):
    """Colorization (seed 004): ONE folder of colour photos (recursive), one domain whose
    photos are both the grayscale inputs and the colour targets (`ColorizationDataset`)."""

    root: Path | str
    dataset: ClassVar[type[Dataset]] = ColorizationDataset

    def domains(self, holdout: float) -> list[DomainFiles]:
        return [DomainFiles(*colorization_splits(self.root, holdout))]
