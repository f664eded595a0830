"""Feature extractors for the distribution metrics (FID, KID, Inception Score).

Each maps images in [-1, 1], (N, C, H, W), to ``(pool, logits)``: pool features for FID/KID and
classifier logits for IS (``None`` when it has no classifier). ``name`` identifies the features
(it keys the on-disk cache of real-image statistics) and ``metric_suffix`` keeps numbers from
non-standard features from being logged under the standard names:

- ``InceptionFeatures``: the standard FID network (torch-fidelity's TF-ported Inception-v3,
  the one torchmetrics uses), TF1-style bilinear resize to 299 (torchmetrics' ``antialias=False``),
  2048-d pool features, unbiased logits. Logged as ``fid``, ``kid_mean``, ``is_mean``.
- ``RandomInceptionFeatures``: the same network and preprocessing with seeded random weights,
  for machines that cannot get the pretrained file. Random features still separate
  colour and texture statistics, but the numbers are not comparable with published FIDs:
  logged as ``fid_randinit`` etc.
- ``ConvFeatures``: a small seeded random conv net at the native resolution: a fast proxy for
  tests and quick checks (``fid_conv``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from bicyclegan_pl.weights import WeightsNotFoundError, resolve_weights

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


def to_uint8_rgb(images: Tensor) -> Tensor:
    """[-1, 1] images -> uint8 RGB, rounded as when saving a PNG; grayscale repeats to 3 channels."""
    images = ((images.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class FeatureExtractor(nn.Module):
    """Frozen, always in eval mode, no gradients."""

    name: str
    metric_suffix: str
    num_features: int
    num_logits: int | None

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError


class InceptionFeatures(FeatureExtractor):
    """The standard FID Inception-v3 (``weights-inception-2015-12-05-6726825d.pth``).

    ``weights_path`` names the file directly; otherwise it is looked up by name in ``weights_dir``
    and the torch hub cache, and downloaded there if ``allow_download``.
    """

    name = "inception-v3-compat"
    metric_suffix = ""
    num_features = 2048
    num_logits = 1008

    def __init__(
        self, weights_path: str | None = None, weights_dir: str | None = None, allow_download: bool = True
    ) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        if weights_path is not None:
            path = Path(weights_path).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(
                    f"The Inception weights file {path} does not exist. Download {INCEPTION_URL} and point "
                    f"weights_path at it (or leave weights_path null to look in paths.weights_dir)."
                )
        else:
            path = resolve_weights(INCEPTION_URL, weights_dir, allow_download, "Inception-v3 (FID/KID/IS)")
        self.weights_path = path
        self.network = FeatureExtractorInceptionV3(
            self.name, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )
        self._freeze()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        pool, logits = self.network(to_uint8_rgb(images))
        return pool, logits


class RandomInceptionFeatures(FeatureExtractor):
    """The standard FID network's architecture and preprocessing with seeded random weights
    (Kaiming-normal convolutions, so activations neither vanish nor explode through its 94
    layers); needs no file. Not the standard FID: logged with the suffix ``_randinit``."""

    metric_suffix = "_randinit"
    num_features = 2048
    num_logits = 1008

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        class _Unloaded(FeatureExtractorInceptionV3):
            # torch-fidelity always loads a state dict in __init__; here there is none to load
            def load_state_dict(self, state_dict, strict=True, assign=False):  # noqa: ARG002
                return None

        self.name = f"inception-v3-compat-random-seed{seed}"
        with tempfile.TemporaryDirectory() as folder, torch.random.fork_rng(devices=[]):
            empty = Path(folder) / "empty.pth"
            torch.save({}, empty)
            torch.manual_seed(seed)
            self.network = _Unloaded(self.name, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(empty))
            for module in self.network.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        self._freeze()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        pool, logits = self.network(to_uint8_rgb(images))
        return pool, logits


class ConvFeatures(FeatureExtractor):
    """A small random conv net (seeded) on the native resolution: mean-pooled features and a
    random linear "classifier" for IS. Fast; for tests and quick sanity checks only."""

    metric_suffix = "_conv"

    def __init__(self, num_features: int = 64, width: int = 32, num_logits: int = 10, seed: int = 0) -> None:
        super().__init__()
        self.name = f"conv-random-f{num_features}-w{width}-l{num_logits}-seed{seed}"
        self.num_features, self.num_logits = num_features, num_logits
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.network = nn.Sequential(
                nn.Conv2d(3, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(2 * width, num_features, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )
            self.classifier = nn.Linear(num_features, num_logits)
        self._freeze()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        pixels = to_uint8_rgb(images).float() / 127.5 - 1.0
        pool = self.network(pixels)
        return pool, self.classifier(pool)
