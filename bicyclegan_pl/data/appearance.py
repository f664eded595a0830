"""Appearances of the synthetic objects: the palette, painting, and classifying.

The synthetic paired data is multimodal by construction: every input outline has
`num_appearances` equally likely fills, one flat palette colour each. Because the colours
are known, a generated image's mode is recovered exactly: `classify_appearance` gives the
nearest palette colour of the mean colour inside the object mask, and `recognise_appearance`
also says when an image shows none of the appearances (an object colour far from every
palette colour, or a background that is not white), so that the metrics count noise or a
black square as what it is rather than as the nearest mode.
"""

from __future__ import annotations

import torch

PALETTE_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta", "cyan", "black", "gray")

# RGB in [0, 1]; the first four are the default appearances. Chosen far apart from each
# other and from the white background (pairwise RGB distance >= 0.55 in [0, 1] units).
_PALETTE_01 = torch.tensor(
    [
        [0.85, 0.10, 0.10],  # red
        [0.10, 0.65, 0.15],  # green
        [0.10, 0.25, 0.90],  # blue
        [0.95, 0.85, 0.10],  # yellow
        [0.80, 0.15, 0.80],  # magenta
        [0.10, 0.80, 0.85],  # cyan
        [0.10, 0.10, 0.10],  # black
        [0.50, 0.50, 0.50],  # gray
    ]
)

MAX_APPEARANCES = len(PALETTE_NAMES)
BACKGROUND = torch.ones(3)
"""White background, in [-1, 1]."""


def appearance_palette(num_appearances: int) -> torch.Tensor:
    """The first `num_appearances` palette colours as a (K, 3) tensor in [-1, 1]."""
    if not 1 <= num_appearances <= MAX_APPEARANCES:
        raise ValueError(f"num_appearances must be in [1, {MAX_APPEARANCES}], got {num_appearances}")
    return _PALETTE_01[:num_appearances] * 2.0 - 1.0


def paint(mask: torch.Tensor, colour: torch.Tensor, background: torch.Tensor = BACKGROUND) -> torch.Tensor:
    """A (3, H, W) image in [-1, 1]: `colour` (3,) where the (1, H, W) mask is 1, else background."""
    colour, background = colour.view(3, 1, 1), background.view(3, 1, 1)
    return mask * colour + (1.0 - mask) * background


def mean_colour(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean colour inside each mask: images (N, 3, H, W), masks (N, 1, H, W) -> (N, 3).
    An empty mask gives the mean of the whole image."""
    masks = masks.to(images.dtype)
    area = masks.sum(dim=(2, 3))
    inside = (images * masks).sum(dim=(2, 3)) / area.clamp(min=1.0)
    return torch.where(area > 0, inside, images.mean(dim=(2, 3)))


def classify_appearance(images: torch.Tensor, masks: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Appearance id of each image: the palette colour nearest (Euclidean, in [-1, 1] RGB)
    to the image's mean colour inside the object mask.

    images: (3, H, W) or (N, 3, H, W) in [-1, 1]; masks: (1, H, W) or (N, 1, H, W);
    palette: (K, 3) from `appearance_palette`. Returns int64 (N,) (a 0-dim tensor for a
    single unbatched image).
    """
    single = images.dim() == 3
    if single:
        images, masks = images.unsqueeze(0), masks.unsqueeze(0)
    colours = mean_colour(images.float(), masks.float())
    ids = torch.cdist(colours, palette.to(colours)).argmin(dim=1)
    return ids[0] if single else ids


def recognition_radius(palette: torch.Tensor) -> float:
    """Half the smallest distance between two palette colours or a colour and the background:
    inside it, the nearest appearance is unambiguous."""
    points = torch.cat([palette.float(), BACKGROUND.to(palette.device).view(1, 3)])
    distances = torch.cdist(points, points)
    distances.fill_diagonal_(float("inf"))
    return 0.5 * float(distances.min())


def recognise_appearance(images: torch.Tensor, masks: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Like :func:`classify_appearance`, but -1 for an image that shows none of the appearances:
    its mean colour inside the true object mask, or outside it (the white background), is
    farther than :func:`recognition_radius` from the colour it should have.

    images: (N, 3, H, W) in [-1, 1]; masks: (N, 1, H, W); palette: (K, 3). Returns int64 (N,).
    """
    palette = palette.to(images.device, torch.float32)
    radius = recognition_radius(palette)
    masks = masks.float()
    inside = mean_colour(images.float(), masks)
    outside = mean_colour(images.float(), 1.0 - masks)
    distances = torch.cdist(inside, palette)
    nearest, ids = distances.min(dim=1)
    background = BACKGROUND.to(images.device).view(1, 3)
    recognised = (nearest < radius) & (torch.linalg.vector_norm(outside - background, dim=1) < radius)
    return torch.where(recognised, ids, torch.full_like(ids, -1))
