"""Semantic preservation of a translator in an embedding space S (seed 002's robustness side of
the lambda trade-off): how much of each input, and of the differences between inputs, survives
translation.

- ``space_cosine``: mean over images of cos(S(x), S(G(x))).
- ``travel_cosine``: mean over ALL ordered pairs i != j of the held-out set of
  cos(S(x_i) - S(x_j), S(G(x_i)) - S(G(x_j))), the TraVeL loss's own measure (1 = every
  transformation vector kept). Pairs are taken a block of rows at a time, so a few thousand
  images never materialise N x N x D at once.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

#: at most this many pair-difference elements per block (about 128 MB in float32 per space)
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
    return {
        "space_cosine": F.cosine_similarity(source.flatten(1), translated.flatten(1), dim=1).mean(),
        "travel_cosine": travel_cosine(source, translated),
    }


@torch.no_grad()
def evaluate_semantic_preservation(
    embed_pair: Callable[[Tensor], tuple[Tensor, Tensor]],
    batches: Iterable[Mapping[str, Any]],
    max_inputs: int | None = None,
    total: int | None = None,
) -> dict[str, float]:
    """``embed_pair(real_A) -> (S(x), S(G(x)))`` over the loader's A images, then both measures
    over the whole set (its pairs span batches). An A image that the split shows more than once
    (an unaligned set has max(|A|, |B|) items) counts once: a pair of copies has no
    transformation vector to keep."""
    sources, translations, seen, paths = [], [], 0, set()
    for batch in tqdm(batches, total=total, desc="semantic preservation", unit="batch"):
        images = batch["A"] if max_inputs is None else batch["A"][: max(0, max_inputs - seen)]
        if len(images) == 0:
            break
        seen += len(images)
        if "A_path" in batch:
            first = [i for i, path in enumerate(batch["A_path"][: len(images)]) if path not in paths]
            paths.update(batch["A_path"][: len(images)])
            images = images[first]
            if len(images) == 0:
                continue
        source, translated = embed_pair(images)
        sources.append(source.float().cpu())
        translations.append(translated.float().cpu())
    return {key: float(value) for key, value in semantic_preservation(torch.cat(sources), torch.cat(translations)).items()}
