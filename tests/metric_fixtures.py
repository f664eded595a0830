"""Pretrained-weight files for the metric tests, built locally with random weights in the
official file names and layouts, so tests load them through the code path real weights take;
and a stand-in for LPIPS whose distances a test can compute by hand."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def write_random_inception_weights(path: Path, seed: int = 0) -> Path:
    """torch-fidelity's FID Inception state dict with random (Kaiming) weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    empty = path.parent / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(seed)
    network = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(network.state_dict(), path)
    return path


def write_random_squeezenet_weights(folder: Path, seed: int = 0) -> Path:
    """torchvision's SqueezeNet 1.1 state dict (the small LPIPS backbone) with random weights,
    in <folder>/checkpoints/ under its official file name."""
    from torchvision.models import SqueezeNet1_1_Weights, squeezenet1_1

    torch.manual_seed(seed)
    path = folder / "checkpoints" / SqueezeNet1_1_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(squeezenet1_1(weights=None).state_dict(), path)
    return path


class MeanAbsoluteDistance(nn.Module):
    """An LPIPS stand-in (same call signature): the mean absolute difference per image pair."""

    def forward(self, first, second, normalize=False):
        return (first - second).abs().mean(dim=(1, 2, 3))
