"""LPIPS diversity by the BicycleGAN protocol (Zhu et al. 2017, Section 5; junyanz/BicycleGAN ``README.md``):
for each input, draw several random z (20), average LPIPS over the consecutive pairs (19),
then average over inputs (100); reported with its standard error over inputs.

LPIPS itself is torchmetrics' (v0.1 linear heads, shipped in its wheel). The published
BicycleGAN numbers used LPIPS v0.0 (``compute_dists_pair.py -v 0.0``), so they are close to but
not exactly comparable with these.
"""
from __future__ import annotations

import math

from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
from torchmetrics.utilities import dim_zero_cat

from bicyclegan_pl.weights import resolve_weights, torch_hub_with

TORCHVISION_BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def load_lpips(
    net_type: str = "alex", weights_dir: str | None = None, allow_download: bool = True
) -> LearnedPerceptualImagePatchSimilarity:
    """torchmetrics LPIPS whose ImageNet backbone file comes from ``weights_dir`` or the hub cache."""
    from torchvision.models import get_model_weights

    if net_type not in TORCHVISION_BACKBONES:
        raise ValueError(f"LPIPS net_type must be one of {sorted(TORCHVISION_BACKBONES)}, got {net_type!r}")
    url = get_model_weights(TORCHVISION_BACKBONES[net_type]).DEFAULT.url
    path = resolve_weights(url, weights_dir, allow_download, f"LPIPS backbone ({TORCHVISION_BACKBONES[net_type]})")
    with torch_hub_with(path):
        return LearnedPerceptualImagePatchSimilarity(net_type=net_type, reduction="none")


def _rgb(images: Tensor) -> Tensor:
    images = images.float().clamp(-1.0, 1.0)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class LPIPSDiversity(Metric):
    """update(samples) with samples (S, N, C, H, W): S random-z outputs for each of N inputs.
    compute() -> (mean over inputs of the mean consecutive-pair LPIPS, its standard error)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, lpips: LearnedPerceptualImagePatchSimilarity | nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lpips = lpips
        self.add_state("per_input", default=[], dist_reduce_fx="cat")

    def distance(self, first: Tensor, second: Tensor) -> Tensor:
        """LPIPS of each pair of images, (M,)."""
        network = self.lpips.net if isinstance(self.lpips, LearnedPerceptualImagePatchSimilarity) else self.lpips
        return network(_rgb(first), _rgb(second), normalize=False).reshape(-1)

    def update(self, samples: Tensor) -> None:
        num_samples, num_inputs = samples.shape[:2]
        if num_samples < 2:
            raise ValueError(f"LPIPS diversity needs at least 2 samples per input, got {num_samples}")
        pairs = self.distance(samples[:-1].flatten(0, 1), samples[1:].flatten(0, 1))
        self.per_input.append(pairs.view(num_samples - 1, num_inputs).mean(dim=0).double())

    def compute(self) -> tuple[Tensor, Tensor]:
        values = dim_zero_cat(self.per_input).reshape(-1)
        if values.numel() == 0:
            raise RuntimeError("LPIPS diversity: no samples were given")
        stderr = values.std(unbiased=True) / math.sqrt(values.numel()) if values.numel() > 1 else values.new_zeros(())
        return values.mean(), stderr


def load_lpips_network(net_type: str = "alex", weights_dir: str | None = None, allow_download: bool = True) -> nn.Module:
    """LPIPS as a differentiable loss network: ``(images, images) -> (N, 1, 1, 1)`` distances for
    images in [-1, 1], its weights frozen (torchmetrics' network behind :func:`load_lpips`)."""
    return load_lpips(net_type, weights_dir, allow_download).net
