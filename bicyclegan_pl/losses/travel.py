"""TraVeLGAN's transformation-vector losses (Amodio & Krishnaswamy 2019; KrishnaswamyLab/travelgan
``_build_loss_G``) and CLIPTraVeLGAN's variant on frozen CLIP embeddings (seed 002; its authors'
Kaggle notebook unfriendlyai/cliptravelgan-monet-article-implementation, ``siames_loss``).

For a batch x_1..x_B with Siamese embeddings S(x_i) and S(G(x_i)), every ordered pair i != j gives
a transformation vector in each space, v_x = S(x_i) - S(x_j) and v_G = S(G(x_i)) - S(G(x_j)); the
generator should preserve them. Pairs are formed all at once by broadcasting (B x B x D), which
is what the references' B - 1 cyclic shifts of the batch enumerate one shift at a time.

The same pairs measure how well a translator preserves them (``travel_cosine``,
``semantic_preservation``), what models log and ``metrics.semantic`` evaluates.
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


#: the most pair-difference elements ``travel_cosine`` holds at once (about 128 MB in float32 per space)
_BLOCK_ELEMENTS = 32 * 1024 * 1024


def travel_cosine(source: Tensor, translated: Tensor) -> Tensor:
    """Mean cosine between transformation vectors over all ordered pairs i != j."""
    count, dims = source.shape[0], source[0].numel()
    if count < 2:
        raise ValueError(f"travel_cosine needs at least 2 images, got {count}")
    source, translated = source.flatten(1).double(), translated.flatten(1).double()
    rows = max(1, _BLOCK_ELEMENTS // (count * dims))
    total = source.new_zeros(())
    for start in range(0, count, rows):
        block = slice(start, min(start + rows, count))
        v_x = source[block, None] - source[None]  # [i, j] = S_i - S_j
        v_g = translated[block, None] - translated[None]
        cosine = F.cosine_similarity(v_x, v_g, dim=-1, eps=1e-8)
        # the diagonal (i == j) is 0 - 0: cos = 0 by the eps convention; leave it out of the mean
        total = total + cosine.sum() - cosine.diagonal(offset=start).sum()
    return (total / (count * (count - 1))).float()


def semantic_preservation(source: Tensor, translated: Tensor) -> dict[str, Tensor]:
    """How much of S survives translation: ``space_cosine``, the mean cos(S(x), S(G(x))), and
    ``travel_cosine``. Logged by TraVeLGAN during training and measured by ``evaluate``
    (``metrics.semantic``) over a held-out set."""
    return {
        "space_cosine": F.cosine_similarity(source.flatten(1), translated.flatten(1), dim=1).mean(),
        "travel_cosine": travel_cosine(source, translated),
    }
