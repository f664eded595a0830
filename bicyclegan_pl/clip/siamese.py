"""CLIPTraVeLGAN's Siamese space (seed 002; ``get_clip_model`` of its authors' Kaggle notebook
unfriendlyai/cliptravelgan-monet-article-implementation): a frozen CLIP vision
encoder. Images in [-1, 1] -> (optional resize) -> centre crop to CLIP's resolution -> CLIP
normalisation -> ``pooler_output`` (the paper's code: the post-layernorm CLS token, before the
projection, not normalised) or ``image_embeds`` (projected). ``random_init`` builds the same
architecture with random weights (the paper's ablation).

Memory: the generator's outputs go through CLIP with a graph, so CLIP's activations for the whole
batch stay alive until the generator's backward pass (benchmarks/travelgan_memory.py measures
them). ``checkpoint`` keeps only CLIP's input and recomputes its forward during the backward
pass; ``chunk_size`` encodes (and so recomputes) that many images at a time, which bounds the
peak to one chunk's activations. Values and gradients are unchanged.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as recompute_in_backward

from bicyclegan_pl.clip.loading import not_found, preprocess_from, resolve_source
from bicyclegan_pl.clip.preprocess import ClipPreprocess

OUTPUTS = ("pooler", "image_embeds")
CONFIG_KEY = "model.siamese.model"  # named in the errors: where a user sets this CLIP


class ClipImageEmbedder(nn.Module):
    """A CLIP vision model (``CLIPVisionModel`` or ``...WithProjection``) as an image -> vector map."""

    frozen = True  # never trained, never in an optimiser or a checkpoint

    def __init__(
        self,
        model: nn.Module,
        preprocess: ClipPreprocess,
        output: str = "pooler",
        chunk_size: int | None = None,
        checkpoint: bool = False,
        name: str = "",
    ):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"siamese output must be one of {OUTPUTS}, got {output!r}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"siamese chunk_size must be a positive number of images or null, got {chunk_size}")
        self.model, self.preprocess = model, preprocess
        self.output, self.chunk_size, self.checkpoint, self.name = output, chunk_size, checkpoint, name
        self.requires_grad_(False).eval()

    @classmethod
    def load(
        cls,
        model: str = "openai/clip-vit-large-patch14",
        output: str = "pooler",
        random_init: bool = False,
        resize: int | str | None = None,
        seed: int = 0,
        local_files_only: bool | None = None,
        chunk_size: int | None = None,
        checkpoint: bool = False,
    ) -> ClipImageEmbedder:
        """From a hub id or a ``save_pretrained`` folder; ``random_init``: its architecture, seeded random weights.
        ``resize``: None (centre-crop to CLIP's input, the paper), a size, or "processor" (the CLIP
        processor's own resize, its shortest edge: a small CLIP's whole input)."""
        from transformers import AutoConfig, CLIPImageProcessor

        if output not in OUTPUTS:
            raise ValueError(f"siamese output must be one of {OUTPUTS}, got {output!r}")
        source, local_files_only = resolve_source(model, local_files_only, key=CONFIG_KEY)
        try:
            processor = CLIPImageProcessor.from_pretrained(source, local_files_only=local_files_only)
            full = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # random_init: seeded weights
                if full.model_type == "vision-text-dual-encoder":
                    vision = DualEncoderVision.load(source, output, random_init, local_files_only)
                else:
                    vision = _clip_vision(source, full, output, random_init, local_files_only)
        except OSError as error:
            raise not_found(model, error, key=CONFIG_KEY) from error
        return cls(vision, preprocess_from(processor, resize=resize), output, chunk_size, checkpoint, name=model)

    def train(self, mode: bool = True) -> ClipImageEmbedder:
        return super().train(False)  # always eval: CLIP is a fixed feature space

    def forward(self, images: Tensor, domain: str | None = None) -> Tensor:
        pixels = self.preprocess(images)
        chunks = pixels.split(self.chunk_size) if self.chunk_size else (pixels,)
        return torch.cat([self._encode_chunk(chunk) for chunk in chunks])

    def _encode_chunk(self, pixels: Tensor) -> Tensor:
        if self.checkpoint and torch.is_grad_enabled() and pixels.requires_grad:
            # CLIP is in eval mode (no dropout), so the recomputation is exact
            return recompute_in_backward(self._embed, pixels, use_reentrant=False)
        return self._embed(pixels)

    def _embed(self, pixels: Tensor) -> Tensor:
        outputs = self.model(pixel_values=pixels)
        return outputs.pooler_output if self.output == "pooler" else outputs.image_embeds


def _clip_vision(source: str, full: object, output: str, random_init: bool, local_files_only: bool) -> nn.Module:
    """The vision half of a CLIPModel folder (or a CLIPVisionModel's), with its projection for image_embeds."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    network = CLIPVisionModelWithProjection if output == "image_embeds" else CLIPVisionModel
    config = CLIPVisionConfig.from_pretrained(source, local_files_only=local_files_only)
    if hasattr(full, "projection_dim"):  # a full CLIP: its projection size, not the vision default
        config.projection_dim = full.projection_dim
    if random_init:
        return network(config)
    return network.from_pretrained(source, config=config, local_files_only=local_files_only)


class DualEncoderVision(nn.Module):
    """The image tower of a ``VisionTextDualEncoderModel`` (clip.pretrain's MobileNetV2 CLIP) with
    the outputs of ``CLIPVisionModelWithProjection``: ``pooler_output`` (the tower's pooled features)
    and ``image_embeds`` (projected)."""

    def __init__(self, vision_model: nn.Module, visual_projection: nn.Module):
        super().__init__()
        self.vision_model, self.visual_projection = vision_model, visual_projection

    @classmethod
    def load(cls, source: str, output: str, random_init: bool, local_files_only: bool) -> DualEncoderVision:
        from transformers import AutoConfig, VisionTextDualEncoderModel

        if random_init:
            full = VisionTextDualEncoderModel(AutoConfig.from_pretrained(source, local_files_only=local_files_only))
        else:
            full = VisionTextDualEncoderModel.from_pretrained(source, local_files_only=local_files_only)
        return cls(full.vision_model, full.visual_projection)

    def forward(self, pixel_values: Tensor) -> SimpleNamespace:
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return SimpleNamespace(pooler_output=pooled, image_embeds=self.visual_projection(pooled))
