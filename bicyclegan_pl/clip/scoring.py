"""Scores of generated images against prompts: the objective the guidance ranks and ascends.

A scorer maps images (N, C, H, W) in [-1, 1] to scores (N, P), one column per prompt (a row of
the output grid), higher is better, differentiable with respect to the images. ``ClipScorer``
is the CLIP cosine similarity; anything with the same signature can stand in (the tests use a
differentiable "redness").
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from bicyclegan_pl.clip.loading import ClipModel
from bicyclegan_pl.errors import UserError
from bicyclegan_pl.data.errors import BadImageError
from bicyclegan_pl.data.images import open_rgb


class PromptError(UserError, ValueError):
    """A prompt, template or image prompt that cannot be used."""


class Scorer(Protocol):
    names: list[str]  # one per score column

    def __call__(self, images: Tensor) -> Tensor: ...


def load_prompt_image(path: str | Path) -> Tensor:
    """An image file as a (1, 3, H, W) tensor in [-1, 1]."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PromptError(f"image prompt {path} does not exist.")
    try:
        tensor = TF.pil_to_tensor(open_rgb(path))  # 16-bit and transparent files as the datasets decode them
    except BadImageError as error:
        raise PromptError(f"image prompt {path} cannot be read as an image ({error.__cause__ or error}).") from error
    return tensor.unsqueeze(0).float() / 127.5 - 1


class ClipScorer:
    """Cosine similarity of the CLIP image embedding with each target embedding, minus
    ``negative_weight`` times its similarity with the negative prompt.

    Text targets are prompt ensembles: the normalised mean of the embeddings of every template
    filled with the prompt (``"a photo of {}"``); image targets are CLIP image embeddings.
    """

    def __init__(
        self,
        clip: ClipModel,
        prompts: Sequence[str] = (),
        image_prompts: Sequence[str | Path] = (),
        templates: Sequence[str] = ("{}",),
        negative_prompt: str | None = None,
        negative_weight: float = 1.0,
    ):
        if not prompts and not image_prompts:
            raise PromptError("no prompt: give prompt=\"...\" (or a list [..., ...]) and/or image_prompt=<image file>.")
        for template in templates:
            if template.count("{}") != 1:
                raise PromptError(f"template {template!r} must contain {{}} exactly once (where the prompt goes).")
        self.clip = clip
        self.templates = list(templates)
        self.negative_weight = float(negative_weight)
        self.names = [*prompts, *(Path(p).name for p in image_prompts)]
        targets = [self.text_embedding(prompt) for prompt in prompts]
        with torch.no_grad():
            targets += [clip.encode_images(load_prompt_image(path))[0] for path in image_prompts]
        self.targets = torch.stack(targets)  # (P, D)
        self.negative = self.text_embedding(negative_prompt) if negative_prompt else None

    def text_embedding(self, prompt: str) -> Tensor:
        if not prompt.strip():
            raise PromptError("an empty prompt; give some text.")
        embeddings = self.clip.encode_text([template.format(prompt) for template in self.templates])
        mean = embeddings.mean(0)
        return mean / mean.norm()

    def __call__(self, images: Tensor) -> Tensor:
        embeddings = self.clip.encode_images(images)
        scores = embeddings @ self.targets.T.to(embeddings)
        if self.negative is not None:
            scores = scores - self.negative_weight * (embeddings @ self.negative.to(embeddings)).unsqueeze(1)
        return scores
