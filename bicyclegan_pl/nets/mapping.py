"""CLIP2GAN's mapping network M (seed 003, Sec. 3.1, Eq. 3): fully connected layers, each followed by
a LeakyReLU, from a CLIP embedding to the latent code of a frozen generator (StyleGAN2's W+,
num_ws x w_dim; DCGAN's z)."""
from __future__ import annotations

import math

from torch import Tensor, nn


class MappingNetwork(nn.Module):
    """``depth`` linear layers: ``in_dim`` -> ``hidden_dim`` (depth - 1 times) -> prod(latent_shape).

    Eq. 3 puts the activation after every layer, the last included (``final_activation=True``,
    the paper's reading); ``final_activation=False`` leaves the last layer linear, so negative
    latent values cost nothing. LeakyReLU's slope is not given in the paper: 0.2 (StyleGAN's).
    """

    def __init__(
        self,
        in_dim: int,
        latent_shape: tuple[int, ...],
        depth: int = 12,
        hidden_dim: int = 512,
        negative_slope: float = 0.2,
        final_activation: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"the mapping network needs at least one layer, got depth={depth}")
        self.latent_shape = tuple(int(size) for size in latent_shape)
        widths = [in_dim] + [hidden_dim] * (depth - 1) + [math.prod(self.latent_shape)]
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths, widths[1:])):
            layers.append(nn.Linear(width_in, width_out))
            if index < depth - 1 or final_activation:
                layers.append(nn.LeakyReLU(negative_slope))
        self.layers = nn.Sequential(*layers)
        # He initialisation for the LeakyReLU (the paper gives none): PyTorch's default shrinks the
        # signal about sqrt(3)-fold per layer, so 12 layers start as a near-constant map, and M
        # trained from there collapsed to one image for every input
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, a=negative_slope, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> Tensor:
        """(B, in_dim) CLIP features -> (B, *latent_shape) latent codes."""
        return self.layers(features).unflatten(1, self.latent_shape)
