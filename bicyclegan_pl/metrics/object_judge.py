"""Reading a generated image of the synthetic objects world without a learned classifier: what
colour and which shape family it shows, judged from the world's ground truth.

- Object: the pixels far from the white background.
- Colour: the palette colour most of the object's inner pixels are nearest to (a striped fill's
  darker shade counts for its colour; the boundary pixel, where a striped object's dark outline
  lies, does not vote).
- Family: the family of the real object whose mask overlaps the generated one best (IoU) in a
  bank of rendered objects with known families, the same distribution the GAN was trained on.

``ObjectJudge.accuracy_on_real`` measures the judge itself on held-out real images (its ceiling):
text-to-image accuracies are read next to it, never as if the judge were perfect.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bicyclegan_pl.data.appearance import BACKGROUND, PALETTE_NAMES, appearance_palette
from bicyclegan_pl.data.captioned import SyntheticCaptionDataset
from bicyclegan_pl.data.captions import ATTRIBUTES
from bicyclegan_pl.data.shapes import FAMILIES, render_mask
from bicyclegan_pl.data.synthetic import stripe_shade

#: how the judge reads an image, for the reports that quote its readings
JUDGE_DESCRIPTION = "metrics.object_judge: colour by the palette, family by the best-overlapping real object"
#: a pixel belongs to the object when its RGB distance (in [-1, 1] units) from white exceeds this
OBJECT_THRESHOLD = 0.5


def centred(masks: Tensor, image_size: int) -> Tensor:
    """(N, H*W) masks shifted (whole pixels, wrapping) so that each object's centroid is the image
    centre: the family comparison then need not also match the position."""
    grid = masks.float().view(-1, image_size, image_size)
    area = grid.sum((1, 2)).clamp(min=1)
    coords = torch.arange(image_size, dtype=torch.float32)
    rows = (grid.sum(2) * coords).sum(1) / area
    cols = (grid.sum(1) * coords).sum(1) / area
    middle = (image_size - 1) / 2
    shifted = [
        torch.roll(mask, (round(middle - float(row)), round(middle - float(col))), dims=(0, 1))
        for mask, row, col in zip(grid, rows, cols)
    ]
    return torch.stack(shifted).flatten(1) if shifted else grid.flatten(1)


def object_masks(images: Tensor) -> Tensor:
    """(N, H*W) bool: the pixels of (N, 3, H, W) images in [-1, 1] far from the white background."""
    distance = (images.float() - BACKGROUND.view(1, 3, 1, 1).to(images.device)).norm(dim=1)
    return (distance > OBJECT_THRESHOLD).flatten(1)


class ObjectJudge:
    """Colour and shape family of images of the synthetic objects world (see the module doc)."""

    def __init__(self, image_size: int, bank_size: int = 20000, seed: int = 0, num_colours: int = len(PALETTE_NAMES)) -> None:
        self.image_size = int(image_size)
        palette = appearance_palette(num_colours)
        # each palette colour and its stripe shade vote for the colour
        self.references = torch.cat([palette, stripe_shade(palette)])
        self.reference_colour = torch.arange(num_colours).repeat(2)
        bank = SyntheticCaptionDataset(bank_size, image_size=image_size, render_sizes=(image_size,), seed=10_000 + seed, split="train")
        specs = [bank._draw(index)[0] for index in range(bank_size)]
        self.bank_masks = centred(torch.stack([render_mask(spec, image_size).flatten() for spec in specs]), image_size)
        self.bank_family = torch.tensor([FAMILIES.index(spec.family) for spec in specs])

    def colours(self, images: Tensor) -> Tensor:
        """(N,) colour ids (ATTRIBUTES["colour"] order); an image without object pixels gets -1."""
        pixels = images.float().flatten(2).transpose(1, 2)  # (N, H*W, 3)
        nearest = torch.cdist(pixels, self.references.to(pixels).expand(len(pixels), -1, -1)).argmin(-1)
        votes = self.reference_colour.to(nearest.device)[nearest]
        masks = object_masks(images)
        # the inside without its boundary pixel: a striped object's dark outline lies there
        grid = masks.float().view(-1, 1, *images.shape[-2:])
        interior = (-F.max_pool2d(-grid, 3, stride=1, padding=1)).flatten(1).bool()
        result = torch.full((len(images),), -1, dtype=torch.long)
        for index in range(len(images)):
            chosen = interior[index] if interior[index].any() else masks[index]
            inside = votes[index][chosen]
            if len(inside):
                result[index] = torch.bincount(inside, minlength=len(PALETTE_NAMES)).argmax()
        return result

    def families(self, images: Tensor) -> Tensor:
        """(N,) family ids (ATTRIBUTES["family"] order): the family of the best-overlapping bank object."""
        masks = centred(object_masks(images).cpu(), self.image_size)
        bank = self.bank_masks
        intersection = masks @ bank.T
        union = masks.sum(1, keepdim=True) + bank.sum(1) - intersection
        return self.bank_family[(intersection / union.clamp(min=1)).argmax(1)]

    def shape_match(self, images: Tensor) -> Tensor:
        """(N,) IoU of each image's object mask with its best-overlapping real object (centred):
        near the real images' value when the shape could have been drawn by the world, low for
        blobs, fragments and empty images."""
        masks = centred(object_masks(images).cpu(), self.image_size)
        intersection = masks @ self.bank_masks.T
        union = masks.sum(1, keepdim=True) + self.bank_masks.sum(1) - intersection
        return (intersection / union.clamp(min=1)).max(1).values

    def palette_fit(self, images: Tensor, tolerance: float = 0.3) -> Tensor:
        """(N,) fraction of each image's inner object pixels within ``tolerance`` (RGB distance in
        [-1, 1] units) of a palette colour, its stripe shade or black (the outline): 1 for a clean
        rendering, lower for muddy or off-palette colours."""
        pixels = images.float().flatten(2).transpose(1, 2)
        references = torch.cat([self.references, -torch.ones(1, 3)]).to(pixels)
        close = torch.cdist(pixels, references.expand(len(pixels), -1, -1)).min(-1).values < tolerance
        masks = object_masks(images)
        return (close & masks).sum(1) / masks.sum(1).clamp(min=1)

    def read(self, images: Tensor) -> dict[str, Tensor]:
        return {"colour": self.colours(images), "family": self.families(images)}

    def accuracy_on_real(self, count: int = 500, seed: int = 1) -> dict[str, float]:
        """The judge's own accuracy on ``count`` held-out real images (drawn at the judge's size)."""
        data = SyntheticCaptionDataset(count, image_size=self.image_size, render_sizes=(self.image_size,), seed=seed, split="val", noise=0.0)
        items = [data[index] for index in range(count)]
        readings = self.read(torch.stack([item["image"] for item in items]))
        return {
            name: float((readings[name] == torch.stack([item[name] for item in items])).float().mean())
            for name in ("colour", "family")
        }


def attribute_hits(readings: dict[str, Tensor], prompts: Sequence[str], named: Sequence[dict[str, str]]) -> dict[str, list[bool]]:
    """Per attribute a prompt names: whether each image shows it. ``readings`` are (P * S,) ids in
    prompt-major order (S images per prompt); ``named`` the attributes each prompt names."""
    samples = len(next(iter(readings.values()))) // max(1, len(prompts))
    hits: dict[str, list[bool]] = {}
    for index, attributes in enumerate(named):
        for name, value in attributes.items():
            if name not in readings:
                continue
            wanted = ATTRIBUTES[name].index(value)
            block = readings[name][index * samples : (index + 1) * samples]
            hits.setdefault(name, []).extend((block == wanted).tolist())
    return hits
