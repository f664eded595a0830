"""Zero-shot classification of the synthetic world's attributes with any CLIP: one prompt per
value ("a red object", "a green object", ...; ``data.captions.zero_shot_prompts``), the value
whose prompt embedding is nearest to the image embedding wins. How well a CLIP knows this world."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from bicyclegan_pl.clip.loading import ClipModel
from bicyclegan_pl.data.captions import ATTRIBUTES, zero_shot_prompts


@torch.no_grad()
def zero_shot_predictions(clip: ClipModel, image_embeddings: Tensor, attribute: str) -> Tensor:
    """Value ids (N,) of ``attribute`` for L2-normalised image embeddings (N, D)."""
    prompts = clip.encode_text(zero_shot_prompts(attribute))
    return (image_embeddings.to(prompts) @ prompts.T).argmax(dim=1).cpu()


def zero_shot_accuracy(clip: ClipModel, image_embeddings: Tensor, labels: Mapping[str, Tensor]) -> dict[str, float]:
    """attribute -> fraction of images whose true value (``labels[attribute]``, ids) is predicted."""
    return {
        attribute: float((zero_shot_predictions(clip, image_embeddings, attribute) == truth.cpu()).float().mean())
        for attribute, truth in labels.items()
    }


def per_value_accuracy(clip: ClipModel, image_embeddings: Tensor, labels: Mapping[str, Tensor]) -> dict[str, dict[str, float]]:
    """attribute -> value -> fraction of the images with that value that are read correctly (the
    recall of each value; values absent from the images are left out): which values a CLIP confuses."""
    found: dict[str, dict[str, float]] = {}
    for attribute, truth in labels.items():
        predictions, truth = zero_shot_predictions(clip, image_embeddings, attribute), truth.cpu()
        found[attribute] = {
            value: float((predictions[truth == index] == index).float().mean())
            for index, value in enumerate(ATTRIBUTES[attribute])
            if (truth == index).any()
        }
    return found
