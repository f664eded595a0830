"""Exact metrics on the synthetic paired data, whose true conditional distribution is known:
every outline has K equally likely flat-colour fills on a white background.

- Mode coverage: for each input, the fraction of the K appearances among its samples (1/K for a
  generator that ignores z, 1.0 for one that covers all modes), averaged over inputs; and the
  KL divergence of the produced appearance distribution from uniform, per input (0 is ideal;
  log K when every sample has the same appearance).
- Structure fidelity: IoU of the generated object mask (pixels far from the white background)
  with the true object mask.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from bicyclegan_pl.data.appearance import BACKGROUND, classify_appearance


def object_mask(images: Tensor, palette: Tensor, background: Tensor = BACKGROUND) -> Tensor:
    """(N, 1, H, W) bool: pixels nearer to some palette colour than halfway from the background.

    The threshold is half the smallest palette-to-background distance, so a pixel of any
    appearance counts as object and a near-white pixel as background."""
    background = background.to(images)
    threshold = 0.5 * torch.linalg.vector_norm(palette.to(images) - background, dim=1).min()
    distance = torch.linalg.vector_norm(images.float() - background.view(1, 3, 1, 1), dim=1, keepdim=True)
    return distance > threshold


class ModeCoverage(Metric):
    """update(samples (S, N, 3, H, W), masks (N, 1, H, W)); compute() -> (coverage, kl_from_uniform)."""

    full_state_update = False

    def __init__(self, palette: Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("palette", palette.detach().clone().float())
        self.num_appearances = palette.shape[0]
        self.add_state("coverage_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("kl_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_inputs", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("histogram", default=torch.zeros(self.num_appearances, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: Tensor, masks: Tensor) -> None:
        num_samples, num_inputs = samples.shape[:2]
        repeated_masks = masks.unsqueeze(0).expand(num_samples, *masks.shape).flatten(0, 1)
        ids = classify_appearance(samples.flatten(0, 1), repeated_masks, self.palette).view(num_samples, num_inputs)
        counts = F.one_hot(ids, self.num_appearances).sum(dim=0).double()  # (N, K)
        probabilities = counts / num_samples
        kl = torch.where(probabilities > 0, probabilities * torch.log(probabilities * self.num_appearances), 0.0)
        self.coverage_sum += (counts > 0).double().sum(dim=1).div(self.num_appearances).sum()
        self.kl_sum += kl.sum(dim=1).sum()
        self.num_inputs += num_inputs
        self.histogram += counts.sum(dim=0).long()

    def compute(self) -> tuple[Tensor, Tensor]:
        if self.num_inputs == 0:
            raise RuntimeError("mode coverage: no samples were given")
        return self.coverage_sum / self.num_inputs, self.kl_sum / self.num_inputs

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
        predicted = object_mask(images, self.palette)
        true = masks > 0.5
        intersection = (predicted & true).flatten(1).sum(dim=1).double()
        union = (predicted | true).flatten(1).sum(dim=1).double()
        iou = torch.where(union > 0, intersection / union.clamp(min=1), 1.0)
        self.iou_sum += iou.sum()
        self.num_images += images.shape[0]

    def compute(self) -> Tensor:
        if self.num_images == 0:
            raise RuntimeError("mask IoU: no images were given")
        return self.iou_sum / self.num_images
