"""Semantic preservation of a translator in an embedding space S (seed 002's robustness side of
the lambda trade-off): how much of each input, and of the differences between inputs, survives
translation.

- ``space_cosine``: mean over images of cos(S(x), S(G(x))).
- ``travel_cosine``: mean over ALL ordered pairs i != j of the held-out set of
  cos(S(x_i) - S(x_j), S(G(x_i)) - S(G(x_j))), the TraVeL loss's own measure (1 = every
  transformation vector kept). Pairs are taken a block of rows at a time, so a few thousand
  images never materialise N x N x D at once.

The measures themselves are pure functions in ``losses.travel`` (TraVeLGAN logs them in training);
this module runs them over a held-out set.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bicyclegan_pl.losses.travel import semantic_preservation


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
