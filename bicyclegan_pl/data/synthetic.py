"""The embedded synthetic datasets: generated on the fly, no files, any resolution.

Paired (edges -> appearance, like edges2shoes): A is the outline of a random object, dark
lines on white; B is the same object filled with one of K equally likely palette colours on
white. The ground truth is therefore exactly known: every input has K correct outputs
(`SyntheticPairedDataset.targets`), and any image's mode is recovered by
`appearance.classify_appearance`.

Unpaired (flat -> striped, for CycleGAN-style systems): domain A shows objects with a flat
fill, domain B independently drawn objects with a striped fill and a dark outline.

Every item is described in words by its ground truth (`attributes`, `data.captions`).

Every item is a pure function of (seed, split, index): it is drawn from its own
`torch.Generator`, so it does not depend on worker processes, access order or other items.
Train and val draw from different streams, so the splits never share an object.
"""

from __future__ import annotations

import zlib

import torch
from torch.utils.data import Dataset

from bicyclegan_pl.data.appearance import PALETTE_NAMES, appearance_palette, paint
from bicyclegan_pl.data.captions import ObjectAttributes, object_attributes
from bicyclegan_pl.data.shapes import ObjectSpec, draw_object, local_coordinates, outline, outline_width, render_mask

SPLITS = ("train", "val")
_MASK64 = (1 << 64) - 1
# Stripe period of the unpaired domain B, in [-1, 1] image units (8 px at 64 px).
_STRIPE_PERIOD = 0.25
_STRIPE_DARKNESS = 0.45


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def item_generator(seed: int, stream: str, index: int) -> torch.Generator:
    """A generator seeded from (seed, stream, index) by hashing, so neighbouring seeds or
    indices give unrelated draws and streams (datasets, splits) never collide."""
    state = 0
    for part in (seed, zlib.crc32(stream.encode()), index):
        state = _splitmix64(state ^ (part & _MASK64))
    return torch.Generator().manual_seed(state)


def _check_common(num_items: int, image_size: int, split: str) -> None:
    if num_items < 0:
        raise ValueError(f"num_items must be >= 0, got {num_items}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _check_index(index: int, length: int) -> int:
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    return int(index)


def edge_image(mask: torch.Tensor, channels: int) -> torch.Tensor:
    """The outline of a (1, H, W) mask as an edge map in [-1, 1]: dark lines (-1) on white
    (+1), like the HED edges of edges2shoes; the channel is repeated `channels` times."""
    edges = outline(mask, outline_width(mask.shape[-1]))
    return (1.0 - 2.0 * edges).repeat(channels, 1, 1)


def flat_image(spec: ObjectSpec, colour: torch.Tensor, image_size: int) -> torch.Tensor:
    """The object filled with `colour` (3,) on white: (3, H, W) in [-1, 1]."""
    return paint(render_mask(spec, image_size), colour)


def stripe_shade(colours: torch.Tensor) -> torch.Tensor:
    """The darker shade of the striped fill for colours (..., 3) in [-1, 1]."""
    return (colours + 1.0) * _STRIPE_DARKNESS - 1.0


def striped_image(spec: ObjectSpec, colour: torch.Tensor, image_size: int) -> torch.Tensor:
    """The object filled with stripes of `colour` and a darker shade, with a dark outline, on
    white (the unpaired set's domain B): (3, H, W) in [-1, 1]."""
    mask = render_mask(spec, image_size)
    x, _ = local_coordinates(spec, image_size)  # stripes turn with the object
    dark_band = (torch.floor(x / (_STRIPE_PERIOD / 2)).remainder(2) == 1).unsqueeze(0)
    fill = torch.where(dark_band, stripe_shade(colour).view(3, 1, 1), colour.view(3, 1, 1))
    image = mask * fill + (1.0 - mask)
    edges = outline(mask, outline_width(image_size))
    return image * (1.0 - edges) - edges  # outline pixels are -1 (black)


class SyntheticPairedDataset(Dataset):
    """Outline -> filled object, K equally likely appearances per outline.

    Items: {"A": (input_nc, H, W) edge map in [-1, 1], "B": (3, H, W) in [-1, 1],
    "mask": (1, H, W) float {0, 1}, "appearance": int64 id in [0, K), "index": int}.
    """

    def __init__(
        self,
        num_items: int,
        image_size: int = 64,
        seed: int = 0,
        split: str = "train",
        num_appearances: int = 4,
        input_nc: int = 1,
    ) -> None:
        _check_common(num_items, image_size, split)
        if input_nc not in (1, 3):
            raise ValueError(f"input_nc must be 1 or 3, got {input_nc}")
        self.num_items = num_items
        self.image_size = image_size
        self.seed = seed
        self.split = split
        self.input_nc = input_nc
        self.palette = appearance_palette(num_appearances)
        self.num_appearances = num_appearances

    def __len__(self) -> int:
        return self.num_items

    def sample(self, index: int) -> tuple[ObjectSpec, int]:
        """The object and appearance id of item `index`, without rendering. The object does
        not depend on `num_appearances` (the appearance is drawn last)."""
        generator = item_generator(self.seed, f"paired/{self.split}", _check_index(index, len(self)))
        spec = draw_object(generator)
        appearance = int(torch.randint(self.num_appearances, (), generator=generator))
        return spec, appearance

    def attributes(self, index: int) -> ObjectAttributes:
        """The ground truth of item `index`'s target B, as its captions name it."""
        spec, appearance = self.sample(index)
        return object_attributes(spec, PALETTE_NAMES[appearance], "plain")

    def targets(self, index: int) -> torch.Tensor:
        """All K correct outputs for item `index`'s input, (K, 3, H, W): entry k is the
        object painted with appearance k (entry `item["appearance"]` equals `item["B"]`)."""
        spec, _ = self.sample(index)
        mask = render_mask(spec, self.image_size)
        return torch.stack([paint(mask, colour) for colour in self.palette])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        spec, appearance = self.sample(index)
        mask = render_mask(spec, self.image_size)
        return {
            "A": edge_image(mask, self.input_nc),
            "B": paint(mask, self.palette[appearance]),
            "mask": mask,
            "appearance": torch.tensor(appearance, dtype=torch.int64),
            "index": int(index),
        }


class SyntheticUnpairedDataset(Dataset):
    """Two styles of the same kind of objects, drawn independently per domain.

    Domain A: flat palette fill on white. Domain B: a different object (its own random
    stream) with the fill in stripes of the colour and a darker shade, and a dark outline.
    Items: {"A": (3, H, W), "B": (3, H, W), both in [-1, 1], "index": int, and each domain's
    ground truth: "mask_A"/"mask_B" (1, H, W) float {0, 1}, "colour_A"/"colour_B" int64 palette
    ids}: what a translation should keep (``metrics.ground_truth``: MaskIoU, ColourKept).
    """

    def __init__(
        self,
        num_items: int,
        image_size: int = 64,
        seed: int = 0,
        split: str = "train",
        num_appearances: int = 4,
    ) -> None:
        _check_common(num_items, image_size, split)
        self.num_items = num_items
        self.image_size = image_size
        self.seed = seed
        self.split = split
        self.palette = appearance_palette(num_appearances)
        self.num_appearances = num_appearances

    def __len__(self) -> int:
        return self.num_items

    def sample(self, domain: str, index: int) -> tuple[ObjectSpec, int]:
        """The object and colour id of item `index` of domain A or B, without rendering."""
        if domain not in ("A", "B"):
            raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
        generator = item_generator(self.seed, f"unpaired_{domain}/{self.split}", _check_index(index, len(self)))
        spec = draw_object(generator)
        return spec, int(torch.randint(self.num_appearances, (), generator=generator))

    def attributes(self, domain: str, index: int) -> ObjectAttributes:
        """The ground truth of item `index` of a domain (A plain, B striped), as its captions name it."""
        spec, colour = self.sample(domain, index)
        return object_attributes(spec, PALETTE_NAMES[colour], "plain" if domain == "A" else "striped")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        index = _check_index(index, len(self))
        item: dict[str, torch.Tensor | int] = {"index": index}
        for domain, render in (("A", flat_image), ("B", striped_image)):
            spec, colour = self.sample(domain, index)
            item[domain] = render(spec, self.palette[colour], self.image_size)
            item[f"mask_{domain}"] = render_mask(spec, self.image_size)
            item[f"colour_{domain}"] = torch.tensor(colour, dtype=torch.int64)
        return item
