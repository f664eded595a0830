"""Adversarial losses for generators and discriminators.

Discriminators may return one prediction map or a list of maps (multi-scale PatchGAN); the
loss of a list is the plain Python sum over scales, as junyanz's ``GANLoss`` does, so that a
reference run is reproduced bit for bit.

The gradient penalties (WGAN-GP on interpolates, R1 on real images) differentiate D's output
summed over scales and positions with respect to its input, and keep that graph so the
penalty's own backward reaches D's parameters (double backward).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GAN_MODES = ("lsgan", "vanilla", "hinge", "wgangp")
#: the kinds of discriminator gradient penalty (``model.gradient_penalty``)
GRADIENT_PENALTIES = ("wgangp", "r1")
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


def _summed_output(discriminator: torch.nn.Module, images: Tensor) -> Tensor:
    """D's output summed over scales, positions and the batch: one scalar whose gradient w.r.t.
    ``images`` holds each sample's own gradient where D judges samples independently (instance
    norm; a batch norm mixes them, as in every implementation of these penalties)."""
    return sum(p.sum() for p in _as_list(discriminator(images)))


def interpolation_gradient_penalty(discriminator: torch.nn.Module, real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad D(x_hat)||_2 - 1)^2] at x_hat = alpha * real + (1 - alpha) * fake.

    ``alpha`` holds one U[0, 1] draw per sample (shape (N,)), made by the caller so that it comes
    from the iteration's random stream. The graph is kept (create_graph), so the penalty's own
    backward reaches D's parameters (double backward); real and fake are detached, so it reaches
    nothing else. The norm is taken over all of a sample's pixels and channels.
    """
    alpha = alpha.reshape(-1, *(1,) * (real.dim() - 1)).to(real)
    interpolates = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (gradients,) = torch.autograd.grad(_summed_output(discriminator, interpolates), interpolates, create_graph=True)
    return ((gradients.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def r1_penalty(discriminator: torch.nn.Module, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): E[||grad D(real)||_2^2] on real images only (no 1/2 and no gamma:
    the weight of the term is gamma / 2), as rosinality/stylegan2-pytorch ``d_r1_loss``: the squared
    gradient summed per sample, averaged over the batch."""
    real = real.detach().requires_grad_(True)
    (gradients,) = torch.autograd.grad(_summed_output(discriminator, real), real, create_graph=True)
    return gradients.pow(2).flatten(1).sum(1).mean()


def gradient_penalty(
    kind: str, discriminator: torch.nn.Module, real: Tensor, fake: Tensor | None = None, alpha: Tensor | None = None
) -> Tensor:
    """The discriminator's gradient penalty of ``kind`` (``wgangp`` needs fake and alpha, ``r1`` neither)."""
    if kind == "r1":
        return r1_penalty(discriminator, real)
    if kind == "wgangp":
        if fake is None or alpha is None:
            raise ValueError("the wgangp gradient penalty needs the fake images and one alpha per sample")
        return interpolation_gradient_penalty(discriminator, real, fake, alpha)
    raise ValueError(f"unknown gradient penalty {kind!r}; choose one of {', '.join(GRADIENT_PENALTIES)}")
