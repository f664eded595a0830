"""Style-transfer losses on VGG features: Gram matrices, and Gatys et al.'s content and style losses.

Gatys, Ecker & Bethge (2015), "A Neural Algorithm of Artistic Style", with F^l the (N_l, M_l)
features of layer l (N_l channels, M_l = height x width positions) of the generated image, P^l of
the content image, and A^l the Gram matrix of the style image:

* Gram matrix: G^l = F^l F^l^T, no normalisation (``gram_matrix(features)``).
* content loss: L_content = 1/2 sum_ij (F^l_ij - P^l_ij)^2 (:func:`content_loss`).
* style loss of a layer: E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2
  (:func:`layer_style_loss`); of the image: L_style = sum_l w_l E_l (:func:`style_loss`).

Other implementations normalise differently (Magenta's arbitrary stylisation and Gatys et al.'s own
PyTorch port divide the Gram matrix by M_l, Johnson et al. by N_l M_l), which only rescales the
loss weights; ``gram_matrix(features, normalize=...)`` gives each of them, so every style loss of
the project reads its Gram matrices here.

Every loss is per image, shape (B,): images of a batch are independent problems (Gatys et al.
optimise each image alone), so a batch's total is their sum, never a mean that would couple the
step size to the batch size.
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

#: divisors of ``gram_matrix``: none (Gatys et al.'s G = F F^T), positions (M = H W), elements (N M)
GRAM_NORMALIZATIONS = ("none", "positions", "elements")


def gram_matrix(features: Tensor, normalize: str = "none") -> Tensor:
    """(B, C, C) Gram matrices of (B, C, H, W) features: G_ij = sum over positions of F_i F_j,
    divided by nothing (``"none"``), by H W (``"positions"``) or by C H W (``"elements"``)."""
    if normalize not in GRAM_NORMALIZATIONS:
        raise ValueError(f"gram_matrix normalize={normalize!r}: choose from {GRAM_NORMALIZATIONS}")
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    gram = flat @ flat.transpose(1, 2)
    divisor = {"none": 1, "positions": height * width, "elements": channels * height * width}[normalize]
    return gram / divisor if divisor != 1 else gram


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Gatys et al.'s L_content = 1/2 sum (F - P)^2, per image: (B,)."""
    return 0.5 * (features - target).pow(2).flatten(1).sum(dim=1)


def layer_style_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """Gatys et al.'s E_l = sum (G - A)^2 / (4 N^2 M^2), per image: (B,).

    ``target_gram``: the style image's unnormalised Gram matrix A, (1, N, N) for one style image
    shared by the batch or (B, N, N) for one per image."""
    _, channels, height, width = features.shape
    difference = gram_matrix(features) - target_gram
    return difference.pow(2).flatten(1).sum(dim=1) / (4.0 * channels**2 * (height * width) ** 2)


def style_loss(features: Mapping[str, Tensor], target_grams: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Gatys et al.'s L_style = sum_l w_l E_l over the layers of ``weights``, per image: (B,)."""
    return sum(weight * layer_style_loss(features[layer], target_grams[layer]) for layer, weight in weights.items())
