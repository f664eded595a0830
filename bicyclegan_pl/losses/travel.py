"""TraVeLGAN's transformation-vector losses (Amodio & Krishnaswamy 2019; KrishnaswamyLab/travelgan
``_build_loss_G``) and CLIPTraVeLGAN's variant on frozen CLIP embeddings (seed 002;
REFERENCE_ALGORITHMS.md 4.3 and 5.2).

For a batch x_1..x_B with Siamese embeddings S(x_i) and S(G(x_i)), every ordered pair i != j gives
a transformation vector in each space, v_x = S(x_i) - S(x_j) and v_G = S(G(x_i)) - S(G(x_j)); the
generator should preserve them. Pairs are formed all at once by broadcasting (B x B x D), which
is what the references' B - 1 cyclic shifts of the batch enumerate one shift at a time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("sum", "mean")


def pair_vectors(embeddings: Tensor) -> Tensor:
    """(B, D) -> (B * (B - 1), D): S_i - S_j for every ordered pair i != j (row-major in i, j)."""
    size = embeddings.shape[0]
    if size < 2:
        raise ValueError(f"the TraVeL losses need pairs: a batch of at least 2, got {size}")
    differences = embeddings.unsqueeze(1) - embeddings.unsqueeze(0)  # [i, j] = S_i - S_j
    off_diagonal = ~torch.eye(size, dtype=torch.bool, device=embeddings.device)
    return differences[off_diagonal]


def travel_loss(
    source: Tensor,
    translated: Tensor,
    cosine_weight: float = 1.0,
    l2_weight: float = 0.0,
    reduction: str = "sum",
    scale_to_batch: int | None = None,
) -> Tensor:
    """cosine_weight * (1 - cos(v_x, v_G)) + l2_weight * mean_d (v_x - v_G)^2, over all ordered pairs.

    reduction ``sum`` (CLIPTraVeLGAN's code: Keras' cosine loss summed over the 127 x 128 pairs of its
    batch; its lambda is sized for that) or ``mean`` (TraVeLGAN's code, which uses -cos: the same
    gradient, a constant lower). TraVeLGAN: cosine_weight 1, l2_weight 1, mean; CLIPTraVeLGAN:
    cosine_weight 1, l2_weight 0, sum. With ``sum`` the loss grows with B(B - 1); ``scale_to_batch``
    N rescales the sum to the N(N - 1) pairs of a batch of N, so that a lambda tuned at batch N
    (the paper's 128) means the same at any batch size.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if source.shape != translated.shape:
        raise ValueError(f"embeddings differ in shape: {tuple(source.shape)} vs {tuple(translated.shape)}")
    v_x, v_g = pair_vectors(source.flatten(1)), pair_vectors(translated.flatten(1))
    per_pair = source.new_zeros(v_x.shape[0])
    if cosine_weight:
        per_pair = per_pair + cosine_weight * (1.0 - F.cosine_similarity(v_x, v_g, dim=1, eps=1e-8))
    if l2_weight:
        per_pair = per_pair + l2_weight * (v_x - v_g).pow(2).mean(dim=1)
    if reduction == "mean":
        return per_pair.mean()
    if scale_to_batch is None:
        return per_pair.sum()
    if scale_to_batch < 2:
        raise ValueError(f"scale_to_batch must be a batch size of at least 2 (or null), got {scale_to_batch}")
    return per_pair.mean() * (scale_to_batch * (scale_to_batch - 1))


def siamese_margin_loss(embeddings: Tensor, margin: float = 10.0) -> Tensor:
    """TraVeLGAN's anti-collapse term for a learned Siamese network: mean over ordered pairs of
    max(0, margin - ||S_i - S_j||^2) (the code's squared norm; margin 10)."""
    return F.relu(margin - pair_vectors(embeddings.flatten(1)).pow(2).sum(dim=1)).mean()
