"""Latent-space losses of BicycleGAN and MSGAN."""
from __future__ import annotations

import torch
from torch import Tensor


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + eps * exp(logvar / 2), with the noise drawn by the caller (once per iteration)."""
    std = logvar.mul(0.5).exp()
    return eps.mul(std).add(mu)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), SUMMED over batch and latent dims (as the reference, not a mean)."""
    kl_element = mu.pow(2).add(logvar.exp()).mul(-1).add(1).add(logvar)
    return torch.sum(kl_element).mul(-0.5)


def latent_l1(predicted: Tensor, target: Tensor) -> Tensor:
    """cLR-GAN latent regression |E(G(A, z)) - z|, mean over all elements."""
    return torch.mean(torch.abs(predicted - target))


def mode_seeking_loss(fake_1: Tensor, fake_2: Tensor, z_1: Tensor, z_2: Tensor, eps: float = 1e-5) -> Tensor:
    """MSGAN (Mao et al. 2019): 1 / (mean|G(z2)-G(z1)| / mean|z2-z1| + eps); small when outputs differ."""
    ratio = torch.mean(torch.abs(fake_2 - fake_1)) / torch.mean(torch.abs(z_2 - z_1))
    return 1.0 / (ratio + eps)
