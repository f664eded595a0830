"""Joint transforms for paired images (pix2pix `data/base_dataset.py : get_transform`).

A and B go through ONE torchvision v2 transform call as a pair of `tv_tensors.Image`, so the
random crop and flip parameters are drawn once and applied to both: the pair stays aligned
by construction. Randomness comes from torch's global generator, which Lightning seeds per
worker (`seed_everything(workers=True)`).
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF


def paired_transform(load_size: int, crop_size: int, train: bool, flip: bool = True) -> v2.Transform:
    """Resize to load_size x load_size (bicubic, as pix2pix), then for training a random
    crop of crop_size and a random horizontal flip (when `flip`), for evaluation a centre
    crop and no flip; then float in [-1, 1]. Call it on a tuple (A, B) of uint8 images."""
    if crop_size > load_size:
        raise ValueError(f"crop_size ({crop_size}) must not exceed load_size ({load_size})")
    steps: list[v2.Transform] = [v2.Resize((load_size, load_size), interpolation=v2.InterpolationMode.BICUBIC)]
    if train:
        steps.append(v2.RandomCrop(crop_size))
        if flip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
    else:
        steps.append(v2.CenterCrop(crop_size))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=[0.5], std=[0.5])]
    return v2.Compose(steps)


def to_image(picture: Image.Image, channels: int) -> tv_tensors.Image:
    """An RGB PIL image as a uint8 (channels, H, W) image; channels 1 is the ITU-R 601
    luma that pix2pix's `transforms.Grayscale(1)` gives."""
    image = tv_tensors.Image(TF.pil_to_tensor(picture))
    if channels == 1:
        return TF.rgb_to_grayscale(image, num_output_channels=1)
    if channels != 3:
        raise ValueError(f"number of channels must be 1 or 3, got {channels}")
    return image
