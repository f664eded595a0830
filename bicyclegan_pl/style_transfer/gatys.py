"""Gatys, Ecker & Bethge (2015), "A Neural Algorithm of Artistic Style": the image itself is optimised
so that its VGG features match the content image's on one layer and the style image's Gram matrices
on several, L_total = alpha L_content + beta L_style (``losses.style``).

Several content images are stylised at once, but each remains its own problem: the losses are per
image, every image has its own optimiser (its own Adam moments, its own L-BFGS history), and only
the VGG forward and backward passes are shared. A batch therefore gives, up to floating-point
rounding, what each image would alone, for Adam and for L-BFGS alike.

L-BFGS without line search (the authors' port) can take steps so large that the loss climbs by
orders of magnitude and then overflows. An image whose loss stops being finite is put back to its
image of lowest loss so far and optimised no further; its details say at which step it overflowed
(``diverged_at_step``) and which step's image it keeps (``kept_step``); the others go on unaffected.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.losses.style import content_loss, gram_matrix, style_loss
from bicyclegan_pl.nets.vgg import VGGFeatures
from bicyclegan_pl.style_transfer.result import Stylized

#: Gatys et al.'s content layer "conv4_2" and style layers "conv1_1" ... "conv5_1", read as the
#: rectified outputs their Caffe blobs held (see ``nets.vgg``), each style layer with w_l = 1/5
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = {"relu1_1": 0.2, "relu2_1": 0.2, "relu3_1": 0.2, "relu4_1": 0.2, "relu5_1": 0.2}
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("noise", "content")
#: step sizes when ``lr`` is not given: L-BFGS's own unit step (its first step is scaled down by the
#: gradient norm); for Adam, in units of [-1, 1] pixels, ~2.5 grey levels of 255 per step
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}


class GatysSettingError(UserError, ValueError):
    """A Gatys et al. setting that cannot be used (the message names it)."""


@dataclass(frozen=True)
class GatysSettings:
    """The optimisation's settings; defaults are the paper's where it gives one (conf/stylize.yaml
    says which). ``steps``: optimiser steps, each one VGG forward and backward pass (L-BFGS runs
    without line search, so one step is one function evaluation)."""

    content_layer: str = CONTENT_LAYER
    style_layers: Mapping[str, float] = field(default_factory=lambda: dict(STYLE_LAYERS))
    content_weight: float = 1.0
    style_weight: float = 1e3
    optimizer: str = "lbfgs"
    steps: int = 500
    lr: float | None = None
    init: str = "noise"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise GatysSettingError(f"optimizer={self.optimizer}: choose from {', '.join(OPTIMIZERS)}.")
        if self.init not in INITS:
            raise GatysSettingError(f"init={self.init}: choose from {', '.join(INITS)}.")
        if self.steps < 1:
            raise GatysSettingError(f"steps={self.steps}: must be at least 1.")
        if self.lr is not None and self.lr <= 0:
            raise GatysSettingError(f"lr={self.lr}: must be positive (or null for the optimizer's default).")
        if not self.style_layers or min(self.style_layers.values()) < 0:
            raise GatysSettingError(f"style_layers={dict(self.style_layers)}: give at least one layer, with weights >= 0.")
        if self.content_weight < 0 or self.style_weight < 0:
            raise GatysSettingError(f"content_weight={self.content_weight}, style_weight={self.style_weight}: must be >= 0.")

    @property
    def layers(self) -> tuple[str, ...]:
        """The VGG layers the losses read (what :class:`VGGFeatures` must return)."""
        return tuple(dict.fromkeys([self.content_layer, *self.style_layers]))


def initial_images(content: Tensor, init: str, seeds: Sequence[int]) -> Tensor:
    """The images the optimisation starts from: white noise, uniform in [-1, 1] (the paper), one
    generator per image seeded by ``seeds`` (so a result does not depend on its batch), or a copy
    of the content images (Gatys et al.'s PyTorch port; converges in fewer steps)."""
    if init == "content":
        return content.clone()
    noise = [torch.rand(content.shape[1:], generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
    return (torch.stack(noise) * 2 - 1).to(content)


class GatysLosses:
    """Per-image losses against fixed targets: call with VGG features, get (B,) content, style and
    total losses.

    The style target is the style image's Gram matrix rescaled to the generated image's number of
    positions (A * M_x / M_a): the paper's E_l assumes both images have the same size, and this
    keeps the loss's scale when they do not (equal sizes: the paper's A exactly)."""

    def __init__(self, settings: GatysSettings, content_features: Mapping[str, Tensor], style_features: Mapping[str, Tensor]) -> None:
        self.settings = settings
        self.content_target = content_features[settings.content_layer].detach()
        self.target_grams = {
            layer: gram_matrix(style_features[layer].detach(), "positions") * content_features[layer][0, 0].numel()
            for layer in settings.style_layers
        }

    def __call__(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        content = content_loss(features[self.settings.content_layer], self.content_target)
        style = style_loss(features, self.target_grams, self.settings.style_layers)
        total = self.settings.content_weight * content + self.settings.style_weight * style
        return {"content": content, "style": style, "total": total}


def make_optimizer(image: Tensor, settings: GatysSettings) -> torch.optim.Optimizer:
    """The optimiser of one image. L-BFGS does one iteration per ``step()`` (``max_iter=1``), so a
    step is one VGG pass for either optimiser and its history carries over between steps."""
    lr = settings.lr if settings.lr is not None else DEFAULT_LR[settings.optimizer]
    if settings.optimizer == "adam":
        return torch.optim.Adam([image], lr=lr)
    return torch.optim.LBFGS([image], lr=lr, max_iter=1)


def _per_image(losses: dict[str, Tensor]) -> list[dict[str, float]]:
    values = {name: value.detach().cpu().tolist() for name, value in losses.items()}
    return [{name: values[name][index] for name in values} for index in range(len(values["total"]))]


def gatys_stylize(
    vgg: VGGFeatures,
    content: Tensor,
    style: Tensor,
    settings: GatysSettings,
    seeds: Sequence[int] | None = None,
    progress: bool = True,
) -> Stylized:
    """Stylise ``content`` (B, 3, H, W) with ``style`` (1, 3, H', W': one style for all, or B: one
    per image), images in [-1, 1] on ``vgg``'s device; ``seeds``: one per image for noise starts
    (default 0 ... B-1). ``vgg`` must return ``settings.layers``.

    Per image, ``details`` hold the losses at the start and at the end (of the returned image,
    clipped to [-1, 1] as it is saved) and the total loss of every step."""
    started = time.perf_counter()
    batch = content.shape[0]
    if style.shape[0] not in (1, batch):
        raise ValueError(f"gatys_stylize: {style.shape[0]} style images for {batch} content images (give 1 or {batch})")
    with torch.no_grad():
        losses = GatysLosses(settings, vgg(content), vgg(style))
    start = initial_images(content, settings.init, range(batch) if seeds is None else seeds)
    images = [start[index : index + 1].clone().requires_grad_(True) for index in range(batch)]
    best = [image.detach().clone() for image in images]  # each image's one of lowest loss so far
    best_loss, best_step = [float("inf")] * batch, [0] * batch
    diverged_at: list[int | None] = [None] * batch
    optimizers = [make_optimizer(image, settings) for image in images]
    history: list[list[float]] = [[] for _ in range(batch)]
    first: list[dict[str, float]] = []
    bar = tqdm(range(settings.steps), desc=f"gatys {settings.optimizer} x{batch}", unit="step", leave=False, disable=not progress)
    for step in bar:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        current = losses(vgg(torch.cat(images)))
        totals = current["total"].detach()
        if not first:
            first = _per_image(current)
        finite = torch.isfinite(totals).tolist()
        for index in range(batch):
            if diverged_at[index] is not None:
                continue
            if finite[index]:
                history[index].append(float(totals[index]))
                if history[index][-1] < best_loss[index]:
                    best[index].copy_(images[index].detach())
                    best_loss[index], best_step[index] = history[index][-1], step
            else:
                diverged_at[index] = step
                with torch.no_grad():
                    images[index].copy_(best[index])
                bar.write(f"gatys: image {index}'s loss is {float(totals[index])} at step {step}; it keeps its best image, of step {best_step[index]}")
        active = torch.tensor([at is None for at in diverged_at], device=totals.device)
        if not active.any():
            break
        torch.where(active, current["total"], torch.zeros_like(current["total"])).sum().backward()
        for index, optimizer in enumerate(optimizers):
            if diverged_at[index] is None:
                # the closure hands back the loss just computed: L-BFGS without line search and with
                # max_iter=1 evaluates it exactly once per step, before its update
                optimizer.step(lambda index=index: totals[index])
        bar.set_postfix(loss=f"{float(totals[active].mean()):.4g}")
    result = torch.cat(images).detach().clamp(-1, 1)
    with torch.no_grad():
        last = _per_image(losses(vgg(result)))
    seconds = time.perf_counter() - started
    details: list[dict[str, Any]] = [
        {"loss_start": first[index], "loss_end": last[index], "total_loss_per_step": history[index], "diverged_at_step": diverged_at[index],
         "kept_step": None if diverged_at[index] is None else best_step[index]}
        for index in range(batch)
    ]
    return Stylized(images=result, seconds=seconds, details=details)
