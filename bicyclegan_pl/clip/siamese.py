"""CLIPTraVeLGAN's Siamese space (seed 002, REFERENCE_ALGORITHMS.md 5.1): a frozen CLIP vision
encoder. Images in [-1, 1] -> (optional resize) -> centre crop to CLIP's resolution -> CLIP
normalisation -> ``pooler_output`` (the paper's code: the post-layernorm CLS token, before the
projection, not normalised) or ``image_embeds`` (projected). ``random_init`` builds the same
architecture with random weights (the paper's ablation)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from bicyclegan_pl.clip.loading import not_found, preprocess_from, resolve_source

OUTPUTS = ("pooler", "image_embeds")


class ClipImageEmbedder(nn.Module):
    frozen = True  # never trained, never in an optimiser or a checkpoint

    def __init__(
        self,
        model: str = "openai/clip-vit-large-patch14",
        output: str = "pooler",
        random_init: bool = False,
        resize: int | None = None,
        seed: int = 0,
        local_files_only: bool | None = None,
    ):
        from transformers import (
            AutoConfig,
            CLIPImageProcessor,
            CLIPVisionConfig,
            CLIPVisionModel,
            CLIPVisionModelWithProjection,
        )

        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"siamese output must be one of {OUTPUTS}, got {output!r}")
        source, local_files_only = resolve_source(model, local_files_only)
        network = CLIPVisionModelWithProjection if output == "image_embeds" else CLIPVisionModel
        try:
            processor = CLIPImageProcessor.from_pretrained(source, local_files_only=local_files_only)
            config = CLIPVisionConfig.from_pretrained(source, local_files_only=local_files_only)
            full = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
            if hasattr(full, "projection_dim"):  # a full CLIP: its projection size, not the vision default
                config.projection_dim = full.projection_dim
            if random_init:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    self.model = network(config)
            else:
                self.model = network.from_pretrained(source, config=config, local_files_only=local_files_only)
        except OSError as error:
            raise not_found(model, error) from error
        self.output = output
        self.name = model
        self.preprocess = preprocess_from(processor, resize=resize)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> ClipImageEmbedder:
        return super().train(False)  # always eval: CLIP is a fixed feature space

    def forward(self, images: Tensor, domain: str | None = None) -> Tensor:
        outputs = self.model(pixel_values=self.preprocess(images))
        return outputs.pooler_output if self.output == "pooler" else outputs.image_embeds
