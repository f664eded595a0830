"""Image–caption pairs of the synthetic world: what the small CLIP of ``clip.pretrain`` learns from.

Each item is one object of any palette colour, plain or striped, with a caption generated from its
ground truth (``data.captions``) and the attribute ids (for zero-shot accuracy). The object is
drawn at one of ``render_sizes`` and resized to ``image_size`` with the resize CLIP's
preprocessing applies (bicubic, antialiased), plus a little pixel noise: the translators whose
outputs this CLIP will judge work at 32 or 64 px and are never exactly flat.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from bicyclegan_pl.data.appearance import PALETTE_NAMES, appearance_palette
from bicyclegan_pl.data.captions import FILLS, ObjectAttributes, object_attributes, random_caption
from bicyclegan_pl.data.shapes import ObjectSpec, draw_object
from bicyclegan_pl.data.synthetic import _check_common, _check_index, flat_image, item_generator, striped_image


class SyntheticCaptionDataset(Dataset):
    """Items: {"image": (3, image_size, image_size) in [-1, 1], "caption": str, "index": int, and
    one int64 id per attribute ("colour", "family", "size", "position", "fill")}. A pure function
    of (seed, split, index), like the other synthetic sets; train and val never share an object."""

    def __init__(
        self,
        num_items: int,
        image_size: int = 64,
        render_sizes: Sequence[int] = (32, 64),
        seed: int = 0,
        split: str = "train",
        num_colours: int = len(PALETTE_NAMES),
        fills: Sequence[str] = FILLS,
        noise: float = 0.03,
    ) -> None:
        _check_common(num_items, image_size, split)
        if not render_sizes or min(render_sizes) < 16:
            raise ValueError(f"render_sizes must be sizes >= 16 pixels, got {list(render_sizes)}")
        unknown = [fill for fill in fills if fill not in FILLS]
        if not fills or unknown:
            raise ValueError(f"fills must be a non-empty subset of {FILLS}, got {list(fills)}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.num_items, self.image_size, self.seed, self.split = num_items, image_size, seed, split
        self.render_sizes, self.fills, self.noise = tuple(render_sizes), tuple(fills), float(noise)
        self.palette = appearance_palette(num_colours)

    def __len__(self) -> int:
        return self.num_items

    def _draw(self, index: int) -> tuple[ObjectSpec, int, str, torch.Generator]:
        generator = item_generator(self.seed, f"captioned/{self.split}", _check_index(index, len(self)))
        spec = draw_object(generator)
        colour = int(torch.randint(len(self.palette), (), generator=generator))
        fill = self.fills[int(torch.randint(len(self.fills), (), generator=generator))]
        return spec, colour, fill, generator

    def attributes(self, index: int) -> ObjectAttributes:
        spec, colour, fill, _ = self._draw(index)
        return object_attributes(spec, PALETTE_NAMES[colour], fill)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int | str]:
        spec, colour, fill, generator = self._draw(index)
        attributes = object_attributes(spec, PALETTE_NAMES[colour], fill)
        size = self.render_sizes[int(torch.randint(len(self.render_sizes), (), generator=generator))]
        render = flat_image if fill == "plain" else striped_image
        image = render(spec, self.palette[colour], size)
        if size != self.image_size:
            image = F.interpolate(
                image.unsqueeze(0), size=(self.image_size, self.image_size), mode="bicubic", antialias=True,
                align_corners=False,
            )[0]
        if self.noise:
            image = image + self.noise * torch.randn(image.shape, generator=generator)
        item: dict[str, torch.Tensor | int | str] = {
            "image": image.clamp(-1.0, 1.0),
            "caption": random_caption(attributes, generator),
            "index": int(index),
        }
        item.update({name: torch.tensor(value, dtype=torch.int64) for name, value in attributes.ids().items()})
        return item


class SyntheticObjectDataset(SyntheticCaptionDataset):
    """The same items with the image under "B", the key of the real (target-domain) images every
    system and metric reads: the training images of the unconditional GANs and of CLIP2GAN."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int | str]:
        item = super().__getitem__(index)
        item["B"] = item.pop("image")
        return item
