"""CLIP from a Hugging Face hub id or a local folder, through transformers.

What the guidance needs from a checkpoint: the model (frozen, eval mode), its tokenizer, and
the image preprocessing its processor config prescribes (input resolution, crop, mean/std),
which ``ClipPreprocess`` then applies in torch so that gradients reach the image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from bicyclegan_pl.clip.preprocess import ClipPreprocess
from bicyclegan_pl.errors import UserError


class ClipNotFoundError(UserError, FileNotFoundError):
    """The CLIP checkpoint is neither a local folder nor in the Hugging Face cache (and cannot be downloaded)."""


@dataclass
class ClipModel:
    """A frozen CLIP model with its tokenizer and its differentiable image preprocessing."""

    model: nn.Module
    tokenizer: object
    preprocess: ClipPreprocess
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> ClipModel:
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Tensor:
        """L2-normalised text embeddings, (len(texts), D)."""
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        return _normalise(projected_features(self.model.get_text_features(**tokens)))

    def encode_images(self, images: Tensor) -> Tensor:
        """L2-normalised image embeddings of images in [-1, 1] (any size, 1 or 3 channels),
        differentiable with respect to ``images``."""
        pixels = self.preprocess(images.to(self.device))
        return _normalise(projected_features(self.model.get_image_features(pixel_values=pixels)))


def projected_features(output: Tensor | object) -> Tensor:
    """The projected embeddings of ``get_image_features``/``get_text_features``."""
    # transformers < 5 returns the projected embeddings; 5 returns a model output holding them
    return output if isinstance(output, Tensor) else output.pooler_output


def _normalise(embeddings: Tensor) -> Tensor:
    return embeddings / embeddings.norm(dim=-1, keepdim=True)


def _size(value: object, *keys: str) -> int:
    """An int from a processor size entry (an int, a dict or transformers' SizeDict)."""
    if isinstance(value, int):
        return value
    for key in keys:
        found = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
        if found:
            return int(found)
    raise ValueError(f"cannot read {keys} from the processor's size {value!r}")


def load_clip(
    name: str, device: torch.device | str = "cpu", local_files_only: bool | None = None, key: str = "clip.model"
) -> ClipModel:
    """``name``: a hub id (``openai/clip-vit-base-patch32``) or a folder written by ``save_pretrained``;
    ``key``: the setting it came from, named in errors.

    ``local_files_only`` (default: the ``HF_HUB_OFFLINE`` environment variable) forbids downloads;
    a checkpoint that cannot be found raises ``ClipNotFoundError`` saying where it was looked for.
    """
    from transformers import AutoModel, AutoTokenizer, CLIPImageProcessor

    source, local_files_only = resolve_source(name, local_files_only, key)
    try:
        # AutoModel: a hub CLIP is a CLIPModel; clip.pretrain's MobileNetV2 CLIP a VisionTextDualEncoderModel
        model = AutoModel.from_pretrained(source, local_files_only=local_files_only)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
        processor = CLIPImageProcessor.from_pretrained(source, local_files_only=local_files_only)
    except OSError as error:
        raise not_found(name, error, key) from error
    if not all(callable(getattr(model, method, None)) for method in ("get_image_features", "get_text_features")):
        raise ClipNotFoundError(
            f"{key}={name}: this is a {type(model).__name__}, not a CLIP-style model with an image and a text "
            f"tower (get_image_features, get_text_features); give a CLIP checkpoint."
        )
    model.eval().requires_grad_(False)
    preprocess = preprocess_from(processor)
    return ClipModel(model=model, tokenizer=tokenizer, preprocess=preprocess, name=name).to(device)


def resolve_source(name: str, local_files_only: bool | None, key: str = "clip.model") -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only); a path-like name must be a folder."""
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), local_files_only
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ClipNotFoundError(
            f"{key}={name}: no such folder (a local CLIP needs a folder written by save_pretrained; "
            f"`python -m bicyclegan_pl.clip.pretrain out_dir={name}` trains the synthetic world's small CLIP there)."
        )
    return name, local_files_only


def not_found(name: str, error: Exception, key: str = "clip.model") -> ClipNotFoundError:
    """``key``: the config key the user set the CLIP with (guide: clip.model; TraVeLGAN: model.siamese.model)."""
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return ClipNotFoundError(
        f"{key}={name}: could not load it ({str(error).splitlines()[0]}). Give a hub id that is in the "
        f"Hugging Face cache ({cache}/hub) or can be downloaded, or a local folder: on a machine with network run "
        f"`huggingface-cli download {name}` (then copy {cache}/hub here) or save it with "
        f"CLIPModel/CLIPProcessor.save_pretrained(<folder>) and pass {key}=<folder>."
    )


def preprocess_from(processor: object, resize: int | None | str = "processor") -> ClipPreprocess:
    """The processor's resolution, crop and mean/std as a differentiable ``ClipPreprocess``
    (``resize`` overrides the processor's shortest-edge size; None keeps the input size)."""
    crop = _size(processor.crop_size, "height", "shortest_edge") if processor.do_center_crop else None
    return ClipPreprocess(
        resize=_size(processor.size, "shortest_edge", "height") if resize == "processor" else resize,
        crop=crop,
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
    )
