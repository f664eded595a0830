"""DCGAN (Radford, Metz & Chintala 2016): the generator seed 003's Table 6 swaps in for StyleGAN2,
and its discriminator.

Generator: z (B, z_dim) -> a 4x4 map by a transposed convolution, then stride-2 transposed 4x4
convolutions with BatchNorm and ReLU that double the size up to ``image_size``, tanh at the end.
Discriminator: the mirror image, stride-2 4x4 convolutions with LeakyReLU(0.2) (BatchNorm after
every one but the first) down to 4x4, then a 4x4 convolution to one raw score per image.
Widths halve (generator) and double (discriminator) per level, capped at ``8 * nf``, as in the
paper's 64 px network (ngf = ndf = 64: 512-256-128-64). Weights keep PyTorch's default initialisation
(the paper draws them from N(0, 0.02); ``nets.init.init_weights(net, "normal", 0.02)`` does that).
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from bicyclegan_pl.nets.latent_generators import LatentGenerator

MAX_CHANNEL_MULTIPLIER = 8


def _levels(image_size: int, name: str) -> int:
    """Number of factor-2 steps between 4 px and ``image_size`` (a power of two >= 8)."""
    levels = math.log2(image_size / 4) if image_size >= 8 else 0.0
    if levels < 1 or not levels.is_integer():
        raise ValueError(f"{name}: image_size must be a power of two of at least 8 pixels, got {image_size}")
    return int(levels)


class DCGANGenerator(LatentGenerator):
    """z -> image in [-1, 1]. Its latent space is z itself (``latent_shape == (z_dim,)``)."""

    def __init__(self, image_size: int = 64, z_dim: int = 100, ngf: int = 64, output_nc: int = 3) -> None:
        super().__init__()
        levels = _levels(image_size, "DCGANGenerator")
        self.z_dim, self.image_size = int(z_dim), int(image_size)
        widths = [ngf * min(2 ** (levels - 1 - level), MAX_CHANNEL_MULTIPLIER) for level in range(levels)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, widths[0], 4, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for in_channels, out_channels in zip(widths, widths[1:]):
            layers += [
                nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], output_nc, 4, stride=2, padding=1, bias=False), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one latent code :meth:`synthesize` takes (what CLIP2GAN's mapping produces)."""
        return (self.z_dim,)

    def synthesize(self, latent: Tensor) -> Tensor:
        """Images for latent codes (B, z_dim); the same as :meth:`forward` (z is DCGAN's only latent)."""
        return self.model(latent.reshape(latent.shape[0], self.z_dim, 1, 1))

    def forward(self, z: Tensor, z_mix: Tensor | None = None, crossover: int | None = None) -> Tensor:
        if z_mix is not None:
            raise ValueError("DCGANGenerator has no style mixing (one code for the whole image)")
        return self.synthesize(z)


class DCGANDiscriminator(nn.Module):
    """image -> one raw score per image, shape (B, 1). ``norm="none"`` drops the BatchNorms, which
    mix the samples of a batch (so a per-image gradient penalty sees other images too)."""

    def __init__(self, image_size: int = 64, ndf: int = 64, input_nc: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if norm not in ("batch", "none"):
            raise ValueError(f"DCGANDiscriminator: norm must be batch or none, got {norm!r}")
        levels = _levels(image_size, "DCGANDiscriminator")
        widths = [ndf * min(2**level, MAX_CHANNEL_MULTIPLIER) for level in range(levels)]
        layers: list[nn.Module] = [nn.Conv2d(input_nc, widths[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for in_channels, out_channels in zip(widths, widths[1:]):
            layers.append(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=0))
        self.model = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).flatten(1)

