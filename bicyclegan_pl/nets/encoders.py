"""Encoder E(B) -> z of BicycleGAN (junyanz E_ResNet)."""

import torch
from torch import nn

from bicyclegan_pl.nets.layers import NormFactory, get_norm_layer

MAX_CHANNEL_MULTIPLIER = 4  # junyanz max_ndf: widths grow nef, 2nef, 3nef, 4nef, 4nef, ...


class ResidualDownBlock(nn.Module):
    """junyanz BasicBlock: a pre-activation residual block that halves the resolution.

    Body: norm, LeakyReLU, conv3x3 (in->in), norm, LeakyReLU, conv3x3 (in->out), avg-pool 2.
    Shortcut: avg-pool 2, conv1x1 (in->out).
    """

    def __init__(self, in_channels: int, out_channels: int, norm_layer: NormFactory) -> None:
        super().__init__()
        self.body = nn.Sequential(
            norm_layer(in_channels),
            # Not in-place: with norm 'none' its input is x, which the shortcut still reads.
            nn.LeakyReLU(0.2),
            nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1),
            norm_layer(in_channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ResNetEncoder(nn.Module):
    """Maps an image to the parameters of q(z|B): (mu, logvar), or to mu alone when not VAE-like.

    Conv4 s2, then n_blocks - 1 residual down-blocks, LeakyReLU, global average pool, linear heads.
    The global pool is adaptive, so any image of at least 2**n_blocks pixels works; at 256 px with
    5 blocks it equals the reference's AvgPool2d(8).
    """

    def __init__(
        self,
        input_nc: int,
        nz: int,
        nef: int = 64,
        n_blocks: int = 5,
        norm: str = "instance",
        vae_like: bool = True,
    ) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be at least 1; got {n_blocks}")
        self.n_blocks = n_blocks
        self.vae_like = vae_like
        norm_layer = get_norm_layer(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, nef, kernel_size=4, stride=2, padding=1)]
        for n in range(1, n_blocks):
            layers.append(
                ResidualDownBlock(
                    nef * min(MAX_CHANNEL_MULTIPLIER, n), nef * min(MAX_CHANNEL_MULTIPLIER, n + 1), norm_layer
                )
            )
        layers += [nn.LeakyReLU(0.2, inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        feature_channels = nef * min(MAX_CHANNEL_MULTIPLIER, n_blocks)
        self.mu_head = nn.Linear(feature_channels, nz)
        self.logvar_head = nn.Linear(feature_channels, nz) if vae_like else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        smallest = 2**self.n_blocks
        if min(x.shape[-2:]) < smallest:
            raise ValueError(
                f"ResNetEncoder with n_blocks={self.n_blocks} halves the image {self.n_blocks} times and needs "
                f"at least {smallest}x{smallest} pixels; got {x.shape[-2]}x{x.shape[-1]}"
            )
        features = self.features(x)
        mu = self.mu_head(features)
        if self.logvar_head is None:
            return mu
        return mu, self.logvar_head(features)
