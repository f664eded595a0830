"""Adversarial losses for generators and discriminators.

Discriminators may return one prediction map or a list of maps (multi-scale PatchGAN); the
loss of a list is the plain Python sum over scales, as junyanz's ``GANLoss`` does, so that a
reference run is reproduced bit for bit.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GAN_MODES = ("lsgan", "vanilla", "hinge", "wgangp")
Predictions = Tensor | Sequence[Tensor]


def _as_list(predictions: Predictions) -> list[Tensor]:
    return [predictions] if isinstance(predictions, Tensor) else list(predictions)


def _check_mode(mode: str) -> None:
    if mode not in GAN_MODES:
        raise ValueError(f"unknown gan_mode {mode!r}; choose one of {', '.join(GAN_MODES)}")


def _target_loss(prediction: Tensor, target_is_real: bool, mode: str) -> Tensor:
    """Loss of one prediction map against the real/fake label (lsgan and vanilla)."""
    target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
    if mode == "lsgan":
        return F.mse_loss(prediction, target)
    return F.binary_cross_entropy_with_logits(prediction, target)


def generator_adversarial_loss(predictions_on_fake: Predictions, mode: str = "lsgan") -> Tensor:
    """The generator's loss: make the discriminator call its fakes real."""
    _check_mode(mode)
    if mode in ("hinge", "wgangp"):
        return sum(-p.mean() for p in _as_list(predictions_on_fake))
    return sum(_target_loss(p, True, mode) for p in _as_list(predictions_on_fake))


def discriminator_adversarial_loss(
    predictions_on_fake: Predictions, predictions_on_real: Predictions, mode: str = "lsgan"
) -> Tensor:
    """The discriminator's loss: fake term + real term (no 1/2 factor, as the BicycleGAN reference)."""
    _check_mode(mode)
    fakes, reals = _as_list(predictions_on_fake), _as_list(predictions_on_real)
    if mode == "hinge":
        return sum(F.relu(1.0 + p).mean() for p in fakes) + sum(F.relu(1.0 - p).mean() for p in reals)
    if mode == "wgangp":
        return sum(p.mean() for p in fakes) - sum(p.mean() for p in reals)
    return sum(_target_loss(p, False, mode) for p in fakes) + sum(_target_loss(p, True, mode) for p in reals)


def gradient_penalty(discriminator: torch.nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP penalty E[(||grad D(x_hat)|| - 1)^2] on random interpolates of real and fake."""
    alpha = torch.rand(real.size(0), 1, 1, 1, generator=generator).to(real)
    interpolates = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    outputs = sum(p.sum() for p in _as_list(discriminator(interpolates)))
    (gradients,) = torch.autograd.grad(outputs, interpolates, create_graph=True)
    return ((gradients.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()
