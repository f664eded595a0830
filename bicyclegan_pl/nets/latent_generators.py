"""The interface of the unconditional generators (DCGAN, StyleGAN2) that the GAN trainer trains and
CLIP2GAN maps into: a declared base class, so systems read attributes instead of probing for them."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class LatentGenerator(nn.Module):
    """z (B, z_dim) -> images (B, C, H, W) in about [-1, 1]; ``synthesize`` takes the latent space a
    mapping network targets (``latent_shape``: DCGAN's z, StyleGAN2's W+ of ``num_ws`` x ``w_dim``)."""

    #: length of the random code z
    z_dim: int
    #: side of the square images it makes, in pixels
    image_size: int
    #: how many per-layer codes the synthesis takes (1 for a generator without layer-wise styles)
    num_ws: int = 1
    #: forward accepts (z, z_mix, crossover): z's styles before layer ``crossover``, z_mix's after
    supports_mixing: bool = False

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one latent code of :meth:`synthesize`."""
        raise NotImplementedError

    def synthesize(self, latent: Tensor) -> Tensor:
        """Images for latent codes of shape (B, *latent_shape)."""
        raise NotImplementedError

    def map_per_layer(self, z: Tensor) -> Tensor:
        """(B, num_ws, z_dim) -> (B, *latent_shape): each layer's z through G's own mapping network
        (StyleGAN2's Z+). Generators without a mapping network have no such space."""
        raise NotImplementedError(f"{type(self).__name__} has no mapping network (no Z+ space)")

    def prior_latents(self, count: int, generator: torch.Generator) -> Tensor:
        """``count`` codes (count, *latent_shape) drawn as in G's training: where :meth:`synthesize`
        makes images it has learned. The default draws z ~ N(0, I) (a generator whose latent is z)."""
        return torch.randn(count, *self.latent_shape, generator=generator).to(next(self.parameters()))

    def forward(self, z: Tensor, z_mix: Tensor | None = None, crossover: int | None = None) -> Tensor:
        raise NotImplementedError
