"""What a style-transfer method returns, so the ``stylize`` and ``compare`` commands treat every
method (per-image optimisation, one forward pass of a trained network) alike."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor


@dataclass
class Stylized:
    """One batch of stylised images.

    images: (B, C, H, W) in [-1, 1], detached; seconds: wall-clock time of the whole batch;
    details: one JSON-able dict per image (losses, settings that vary per image)."""

    images: Tensor
    seconds: float
    details: list[dict[str, Any]]


#: a method ready to run: (content (B, 3, H, W), style (1 or B, 3, H, W), one seed per content image)
#: -> Stylized; images in [-1, 1]
StylizeFunction = Callable[[Tensor, Tensor, Sequence[int]], Stylized]
