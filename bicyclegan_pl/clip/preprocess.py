"""CLIP's image preprocessing in torch, so the gradient of a CLIP score reaches the image.

transformers' CLIPImageProcessor works on PIL/NumPy images and would cut the graph. This
module does its steps on tensors: resize the shortest side (bicubic, antialiased, as PIL),
centre crop, then normalise [0, 1] pixels with the processor's mean and std.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF


class ClipPreprocess(nn.Module):
    def __init__(
        self,
        resize: int | None = 224,
        crop: int | None = 224,
        mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073),
        std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711),
    ):
        super().__init__()
        self.resize, self.crop = resize, crop
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """images: (N, 1 or 3, H, W) in [-1, 1] -> (N, 3, crop, crop) normalised for CLIP."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        pixels = ((images.float() + 1) / 2).clamp(0, 1)
        height, width = pixels.shape[-2:]
        # resize None: keep the size (CLIPTraVeLGAN centre-crops 256 px to 224), unless too small to crop
        target = self.resize if self.resize is not None else max(self.crop or 0, min(height, width))
        scale = target / min(height, width)
        size = (max(target, round(height * scale)), max(target, round(width * scale)))
        if size != (height, width):
            pixels = F.interpolate(pixels, size=size, mode="bicubic", antialias=True, align_corners=False)
        if self.crop is not None:
            pixels = TF.center_crop(pixels, [self.crop, self.crop])
        return (pixels - self.mean.to(pixels)) / self.std.to(pixels)
