"""How Ghiasi et al.'s system prepares style images: the resize before the style prediction network
and Magenta's training augmentation (``image_utils.arbitrary_style_image_inputs`` with
``augment_style_images`` and ``random_style_image_size``, both on by default in
``arbitrary_image_stylization_train.py``).

The draws are made once per iteration from the iteration's generator (``prepare_iteration``), so a
resumed run sees the same style images as an uninterrupted one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor


def resize_smaller_side(images: Tensor, size: int) -> Tensor:
    """Bilinear resize keeping the aspect ratio, the smaller side to ``size`` (Magenta's
    ``_aspect_preserving_resize``: truncated sizes, no antialiasing)."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    target = (max(1, int(height * scale)), max(1, int(width * scale)))
    if target == (height, width):
        return images
    return F.interpolate(images, size=target, mode="bilinear", align_corners=False, antialias=False)


@dataclass(frozen=True)
class StyleAugmentation:
    """Magenta's style augmentation, per image: brightness + U(-brightness, brightness) on the [0, 1]
    scale (``tf.image.random_brightness(max_delta=0.8)``), saturation x U(saturation)
    (``random_saturation(0.5, 1.5)``; torchvision's, a blend with the grayscale image, where TF
    scales S in HSV), hue + U(-hue, hue) turns (``random_hue(0.2)``), random left-right and
    up-down flips; then the whole batch resized so its smaller side is a random integer in
    [random_size[0], random_size[1]) (``random_style_image_size``, 128 to 300). Not kept: Magenta's
    random zoom before its 256 crop (the data module's load_size -> crop_size random crop stands in)."""

    brightness: float = 0.8
    saturation: Sequence[float] = (0.5, 1.5)
    hue: float = 0.2
    flips: bool = True
    random_size: Sequence[int] | None = (128, 300)

    def __post_init__(self) -> None:
        low, high = self.saturation
        if not 0 <= low <= high or self.brightness < 0 or not 0 <= self.hue <= 0.5:
            raise ValueError(
                f"style augmentation: brightness >= 0, 0 <= saturation[0] <= saturation[1] and 0 <= hue <= 0.5, got "
                f"brightness={self.brightness}, saturation={list(self.saturation)}, hue={self.hue}"
            )
        if self.random_size is not None and not 1 <= self.random_size[0] < self.random_size[1]:
            raise ValueError(f"style augmentation random_size must be [low, high) with 1 <= low < high, got {list(self.random_size)}")

    def draw(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Every random value of one batch's augmentation (on the CPU)."""
        def uniform(low: float, high: float) -> Tensor:
            return low + (high - low) * torch.rand(batch_size, generator=generator)

        draws = {
            "brightness": uniform(-self.brightness, self.brightness),
            "saturation": uniform(*self.saturation),
            "hue": uniform(-self.hue, self.hue),
            "flip_lr": torch.rand(batch_size, generator=generator) < 0.5,
            "flip_ud": torch.rand(batch_size, generator=generator) < 0.5,
        }
        if self.random_size is not None:
            draws["size"] = torch.randint(self.random_size[0], self.random_size[1], (), generator=generator)
        return draws

    def apply(self, images: Tensor, draws: dict[str, Tensor]) -> Tensor:
        """``images`` (N, 3, H, W) in [-1, 1], augmented with ``draws`` (from :meth:`draw`)."""
        augmented = []
        for index, image in enumerate((images + 1) / 2):
            image = (image + float(draws["brightness"][index])).clamp(0, 1)
            image = TF.adjust_saturation(image, float(draws["saturation"][index])).clamp(0, 1)
            image = TF.adjust_hue(image, float(draws["hue"][index]))
            if self.flips and draws["flip_lr"][index]:
                image = image.flip(-1)
            if self.flips and draws["flip_ud"][index]:
                image = image.flip(-2)
            augmented.append(image)
        images = torch.stack(augmented) * 2 - 1
        return resize_smaller_side(images, int(draws["size"])) if "size" in draws else images
