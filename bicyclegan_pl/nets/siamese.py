"""TraVeLGAN's networks (KrishnaswamyLab/travelgan ``travelgan.py``):
the learned Siamese network and the global (non-patch) discriminator. Kernel 4, stride 2,
padding 1 convolutions, LeakyReLU 0.2, BatchNorm after every conv but the first."""
from __future__ import annotations

from torch import Tensor, nn


def _check_size(image_size: int, floor: int, name: str) -> int:
    levels = 0
    size = image_size
    while size > floor:
        if size % 2:
            raise ValueError(f"{name}: image_size {image_size} must halve down to {floor} or less")
        size //= 2
        levels += 1
    if levels == 0:
        raise ValueError(f"{name}: image_size {image_size} must be larger than {floor}")
    return levels


def _down(in_channels: int, out_channels: int, norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1)]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels, momentum=0.1))
    return [*layers, nn.LeakyReLU(0.2, inplace=True)]


class TravelSiamese(nn.Module):
    """S: convs of 64, 128, 256, 512, 512 channels (capped at 8 x nf) while the size is above 4,
    then a linear layer to ``latent_dim``. The first convolution is domain-specific ("A"/"B"),
    the rest is shared, as in the reference."""

    frozen = False

    def __init__(self, input_nc: int, output_nc: int, image_size: int, nf: int = 64, latent_dim: int = 1000):
        super().__init__()
        levels = _check_size(image_size, 4, "TravelSiamese")
        self.first = nn.ModuleDict({
            "A": nn.Sequential(*_down(input_nc, nf, norm=False)),
            "B": nn.Sequential(*_down(output_nc, nf, norm=False)),
        })
        layers, channels = [], nf
        for level in range(1, levels):
            out = min(nf * 2 ** level, nf * 8)
            layers += _down(channels, out, norm=True)
            channels = out
        self.shared = nn.Sequential(*layers)
        final = image_size // 2**levels
        self.project = nn.Linear(channels * final * final, latent_dim)

    def forward(self, images: Tensor, domain: str) -> Tensor:
        return self.project(self.shared(self.first[domain](images)).flatten(1))


class GlobalDiscriminator(nn.Module):
    """TraVeLGAN's D: convs from 2 x nf doubling to 1024 while the size is above 4, flattened to one
    logit per image (not a PatchGAN)."""

    def __init__(self, input_nc: int, image_size: int, nf: int = 64):
        super().__init__()
        levels = _check_size(image_size, 4, "GlobalDiscriminator")
        layers, channels = [], input_nc
        for level in range(levels):
            out = min(2 * nf * 2**level, 1024)
            layers += _down(channels, out, norm=level > 0)
            channels = out
        self.features = nn.Sequential(*layers)
        final = image_size // 2**levels
        self.logit = nn.Linear(channels * final * final, 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.logit(self.features(images).flatten(1))
