"""How much of a target domain's style an image has, and how much of its input's content it kept:
the two axes seed 004 judged its style-transfer comparison on by eye.

* Style distance: the relative Frobenius distance between an image's Gram matrices and the mean
  Gram matrices of the target domain's images, averaged over Gatys et al.'s style layers of VGG-19
  (conv1_1 ... conv5_1, after ReLU): ``mean_l ||G_l(x) - mean_y G_l(y)||_F / ||mean_y G_l(y)||_F``.
  Relative, so that the five layers (whose Gram scales differ by orders of magnitude) weigh alike;
  0 for an image with the domain's average feature statistics.
* Content preservation: LPIPS between output and input (lower = closer), and SSIM between their
  luma (1 = same structure). SSIM on luma ignores colour on purpose: colorization must change the
  colours and keep the structure.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure

from bicyclegan_pl.losses.style import gram_matrix

#: Gatys et al. (2015): "conv1_1, conv2_1, conv3_1, conv4_1 and conv5_1" (their ReLU outputs)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def to_rgb(images: Tensor) -> Tensor:
    """Grayscale (N, 1, H, W) repeats to three channels; RGB passes through."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def luma(images: Tensor) -> Tensor:
    """ITU-R 601 luma of [-1, 1] images, (N, 1, H, W) in [-1, 1]."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


class GramStyleDistance(nn.Module):
    """``fit(target_images)`` once, then ``forward(images)`` -> (N,) style distances to that domain.

    ``vgg``: a :class:`bicyclegan_pl.nets.vgg.VGGFeatures` returning at least :data:`STYLE_LAYERS`."""

    def __init__(self, vgg: nn.Module, layers: tuple[str, ...] = STYLE_LAYERS, batch_size: int = 16) -> None:
        super().__init__()
        self.vgg = vgg
        self.layers = layers
        self.batch_size = batch_size
        self.target_grams: dict[str, Tensor] = {}

    @torch.no_grad()
    def grams(self, images: Tensor) -> dict[str, Tensor]:
        """Per layer, the (N, C, C) Gram matrices of ``images`` (in batches of ``batch_size``)."""
        found: dict[str, list[Tensor]] = {layer: [] for layer in self.layers}
        for start in range(0, len(images), self.batch_size):
            features = self.vgg(to_rgb(images[start : start + self.batch_size]))
            for layer in self.layers:
                found[layer].append(gram_matrix(features[layer].double(), normalize="positions"))
        return {layer: torch.cat(values) for layer, values in found.items()}

    def fit(self, target_images: Tensor) -> "GramStyleDistance":
        self.target_grams = {layer: grams.mean(dim=0) for layer, grams in self.grams(target_images).items()}
        return self

    def forward(self, images: Tensor) -> Tensor:
        if not self.target_grams:
            raise RuntimeError("GramStyleDistance.fit(target_images) must come first")
        distances = []
        for layer, grams in self.grams(images).items():
            target = self.target_grams[layer]
            distances.append((grams - target).flatten(1).norm(dim=1) / target.norm())
        return torch.stack(distances).mean(dim=0).float()


@torch.no_grad()
def luma_ssim(outputs: Tensor, inputs: Tensor) -> Tensor:
    """(N,) SSIM between the luma of ``outputs`` and of ``inputs`` ([-1, 1] images, any channels)."""
    return structural_similarity_index_measure(
        luma(outputs.float()), luma(inputs.float()), data_range=2.0, reduction="none"
    )


@torch.no_grad()
def lpips_distance(lpips: nn.Module, outputs: Tensor, inputs: Tensor, batch_size: int = 16) -> Tensor:
    """(N,) LPIPS between ``outputs`` and ``inputs`` (an LPIPS network called as torchmetrics' ``.net``)."""
    values = [
        lpips(to_rgb(outputs[i : i + batch_size]).float().clamp(-1, 1), to_rgb(inputs[i : i + batch_size]).float().clamp(-1, 1), normalize=False).reshape(-1)
        for i in range(0, len(outputs), batch_size)
    ]
    return torch.cat(values)
