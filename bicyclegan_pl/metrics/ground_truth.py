"""Exact metrics on the synthetic paired data, whose true conditional distribution is known:
every outline has K equally likely flat-colour fills on a white background.

- Mode coverage: for each input, the fraction of the K appearances among its samples (1/K for a
  generator that ignores z, 1.0 for one that covers all modes), averaged over inputs; the KL
  divergence of the produced appearance distribution from uniform, per input (0 is ideal;
  log K when every sample has the same appearance); and the fraction of samples that show no
  appearance at all (noise, a black square, a coloured background: ``off_palette``). A sample
  counts for a mode only when it is recognisably that mode (``recognise_appearance``), so a
  generator cannot cover modes with garbage.
- Encoded accuracy: the fraction of inputs whose reconstruction through the encoder,
  G(A, E(B)), shows the target's own appearance.
- Structure fidelity: IoU of the generated object mask (pixels far from the white background)
  with the true object mask.

On the synthetic unpaired data (flat -> striped), whose inputs come with their mask and colour:
- What a translation keeps of its input: its shape and place (``MaskIoU`` of the translated
  object with the input's mask) and its colour (``ColourKept``): seed 002's semantic robustness,
  judged by the ground truth rather than by another network.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from bicyclegan_pl.data.appearance import BACKGROUND, recognise_appearance
from bicyclegan_pl.data.synthetic import stripe_shade


def object_mask(images: Tensor, palette: Tensor, background: Tensor = BACKGROUND) -> Tensor:
    """(N, 1, H, W) bool: pixels nearer to some palette colour than halfway from the background.

    The threshold is half the smallest palette-to-background distance, so a pixel of any
    appearance counts as object and a near-white pixel as background."""
    background = background.to(images)
    threshold = 0.5 * torch.linalg.vector_norm(palette.to(images) - background, dim=1).min()
    distance = torch.linalg.vector_norm(images.float() - background.view(1, 3, 1, 1), dim=1, keepdim=True)
    return distance > threshold


def object_iou(images: Tensor, masks: Tensor, palette: Tensor) -> Tensor:
    """(M,) float64 IoU of each image's object (``object_mask``) with the true (M, 1, H, W) mask
    (1 when both are empty)."""
    predicted, true = object_mask(images, palette), masks > 0.5
    intersection = (predicted & true).flatten(1).sum(dim=1).double()
    union = (predicted | true).flatten(1).sum(dim=1).double()
    return torch.where(union > 0, intersection / union.clamp(min=1), 1.0)


class ModeCoverage(Metric):
    """update(samples (S, N, 3, H, W), masks (N, 1, H, W)); compute() -> (coverage, kl_from_uniform,
    off_palette). The KL is over an input's recognised samples (log K when none is recognised)."""

    full_state_update = False

    def __init__(self, palette: Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("palette", palette.detach().clone().float())
        self.num_appearances = palette.shape[0]
        self.add_state("coverage_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("kl_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_inputs", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_off_palette", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_samples", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("histogram", default=torch.zeros(self.num_appearances, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: Tensor, masks: Tensor) -> None:
        num_samples, num_inputs = samples.shape[:2]
        repeated_masks = masks.unsqueeze(0).expand(num_samples, *masks.shape).flatten(0, 1)
        ids = recognise_appearance(samples.flatten(0, 1), repeated_masks, self.palette).view(num_samples, num_inputs)
        recognised = ids >= 0
        # one extra class for "no appearance", dropped from the counts
        counts = F.one_hot(torch.where(recognised, ids, self.num_appearances), self.num_appearances + 1)
        counts = counts[..., : self.num_appearances].sum(dim=0).double()  # (N, K)
        totals = counts.sum(dim=1, keepdim=True)
        probabilities = counts / totals.clamp(min=1)
        kl = torch.where(probabilities > 0, probabilities * torch.log(probabilities * self.num_appearances), 0.0).sum(dim=1)
        kl = torch.where(totals.squeeze(1) > 0, kl, math.log(self.num_appearances))
        self.coverage_sum += (counts > 0).double().sum(dim=1).div(self.num_appearances).sum()
        self.kl_sum += kl.sum()
        self.num_inputs += num_inputs
        self.num_off_palette += (~recognised).sum()
        self.num_samples += ids.numel()
        self.histogram += counts.sum(dim=0).long()

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:
        if self.num_inputs == 0:
            raise RuntimeError("mode coverage: no samples were given")
        off_palette = self.num_off_palette.double() / self.num_samples
        return self.coverage_sum / self.num_inputs, self.kl_sum / self.num_inputs, off_palette

    @property
    def max_kl(self) -> float:
        return math.log(self.num_appearances)


class MaskIoU(Metric):
    """update(images (M, 3, H, W), masks (M, 1, H, W)); compute() -> mean IoU of the generated
    object mask with the true one (1 when both are empty)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, palette: Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("palette", palette.detach().clone().float())
        self.add_state("iou_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: Tensor, masks: Tensor) -> None:
        self.iou_sum += object_iou(images, masks, self.palette).sum()
        self.num_images += images.shape[0]

    def compute(self) -> Tensor:
        if self.num_images == 0:
            raise RuntimeError("mask IoU: no images were given")
        return self.iou_sum / self.num_images


class ColourMatch(Metric):
    """update(images (N, 3, H, W), masks (N, 1, H, W), colours (N,)); compute() -> the fraction of
    images whose colour, as ``read(images, masks, palette)`` reads it inside the mask, is the
    expected palette id."""

    full_state_update = False
    higher_is_better = True
    what = "images"

    def __init__(self, palette: Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("palette", palette.detach().clone().float())
        self.add_state("num_correct", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @staticmethod
    def read(images: Tensor, masks: Tensor, palette: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, images: Tensor, masks: Tensor, colours: Tensor) -> None:
        ids = self.read(images, masks, self.palette)
        self.num_correct += (ids == colours.to(ids.device)).sum()
        self.num_images += images.shape[0]

    def compute(self) -> Tensor:
        if self.num_images == 0:
            raise RuntimeError(f"{type(self).__name__}: no {self.what} were given")
        return self.num_correct.double() / self.num_images


class EncodedAccuracy(ColourMatch):
    """The fraction of reconstructions G(A, E(B)) that show their target's appearance (recognised,
    not just nearest: ``recognise_appearance``)."""

    what = "reconstructions"
    read = staticmethod(recognise_appearance)


def dominant_colour(images: Tensor, masks: Tensor, palette: Tensor) -> Tensor:
    """Palette id (N,) of the colour an object shows inside ``masks``, by a vote of its pixels:
    each pixel votes for the palette colour it is nearest to, or that colour's darker stripe
    shade (``synthetic.stripe_shade``); pixels nearest to black (an outline) or white vote for
    none. So a flat fill and the striped style read as their colour; -1 when no pixel votes."""
    palette = palette.to(images.device, torch.float32)
    black, white = -torch.ones(1, 3, device=images.device), BACKGROUND.to(palette).view(1, 3)
    candidates = torch.cat([palette, stripe_shade(palette), black, white])
    pixels = images.float().permute(0, 2, 3, 1)  # (N, H, W, 3)
    nearest = torch.cdist(pixels.flatten(1, 2), candidates.expand(len(images), -1, -1)).argmin(dim=-1)  # (N, HW)
    votes_for = torch.where(nearest < 2 * len(palette), nearest % len(palette), len(palette))
    inside = masks.flatten(1) > 0.5
    votes = F.one_hot(torch.where(inside, votes_for, len(palette)), len(palette) + 1)[..., : len(palette)].sum(dim=1)
    return torch.where(votes.sum(dim=1) > 0, votes.argmax(dim=1), -1)


class ColourKept(ColourMatch):
    """The fraction of translations whose dominant colour (``dominant_colour``) inside the input's
    object is the input's colour: what an unpaired translation keeps of its input's colour (the
    synthetic unpaired data, whose inputs come with their mask and colour; its shape is MaskIoU
    against the input's mask)."""

    what = "translations"
    read = staticmethod(dominant_colour)
