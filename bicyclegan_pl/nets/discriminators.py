"""PatchGAN discriminators: one scale (CycleGAN NLayerDiscriminator) and several (junyanz D_NLayersMulti);
and a global one that judges the whole image (seed 001's "vanilla discriminator").

They output raw scores (no sigmoid); the adversarial loss decides how to read them.
"""

import torch
from torch import nn

from bicyclegan_pl.nets.layers import get_norm_layer

MAX_CHANNEL_MULTIPLIER = 8


def first_block(input_nc: int, ndf: int) -> list[nn.Module]:
    """The pix2pix discriminators' first block: a stride-2 4x4 conv without norm, LeakyReLU(0.2)."""
    return [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]


class PatchDiscriminator(nn.Module):
    """PatchGAN: a map of real/fake scores, each for one receptive field (70x70 with n_layers=3).

    Conv4 s2 + LeakyReLU, then n_layers - 1 x [Conv4 s2, norm, LeakyReLU], then Conv4 s1, norm,
    LeakyReLU, and a final Conv4 s1 to one channel. Biases are dropped before BatchNorm only,
    which cancels them (CycleGAN).
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1; got {n_layers}")
        norm_layer = get_norm_layer(norm)
        use_bias = norm != "batch"
        layers = first_block(input_nc, ndf)
        multiplier = 1
        for n in range(1, n_layers + 1):  # the last of these keeps the resolution (stride 1)
            previous, multiplier = multiplier, min(2**n, MAX_CHANNEL_MULTIPLIER)
            layers += [
                nn.Conv2d(
                    ndf * previous, ndf * multiplier, kernel_size=4, stride=2 if n < n_layers else 1, padding=1,
                    bias=use_bias,
                ),
                norm_layer(ndf * multiplier),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(nn.Conv2d(ndf * multiplier, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MultiscalePatchDiscriminator(nn.Module):
    """num_D PatchGANs on successively halved copies of the input (junyanz D_NLayersMulti).

    Scale i has round(ndf / 2**i) base channels and sees the input average-pooled i times, so
    coarser scales judge larger structures at little extra cost. forward always returns a list
    (also for num_D=1), unlike the reference, whose num_D=1 tensor output makes its GAN loss
    iterate over the batch dimension.
    """

    def __init__(
        self, input_nc: int, ndf: int = 64, n_layers: int = 3, num_D: int = 2, norm: str = "instance"
    ) -> None:
        super().__init__()
        if num_D < 1:
            raise ValueError(f"num_D must be at least 1; got {num_D}")
        scale_widths = [int(round(ndf / 2**i)) for i in range(num_D)]
        if min(scale_widths) < 1:
            raise ValueError(f"ndf={ndf} is too small for num_D={num_D}: scale widths would be {scale_widths}")
        self.scales = nn.ModuleList(
            PatchDiscriminator(input_nc, width, n_layers, norm) for width in scale_widths
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        predictions = []
        for index, scale in enumerate(self.scales):
            if index > 0:
                x = self.downsample(x)
            predictions.append(scale(x))
        return predictions


class GlobalDiscriminator(nn.Module):
    """One real/fake score per image, (N, 1): a DCGAN-style "vanilla" discriminator, not a PatchGAN.

    n_layers x Conv4 s2 (+ norm, except after the first) + LeakyReLU 0.2 with ndf, 2 ndf, ...
    channels (capped at 8 ndf, as the PatchGAN), then a linear layer from the flattened
    (image_size / 2**n_layers)^2 features to one logit. It takes the PatchGAN's arguments (ndf,
    n_layers, norm), so a config swaps one for the other; ``image_size`` sizes the linear layer,
    so it judges images of that size only. TraVeLGAN's own global D (its fixed widths, BatchNorm)
    is :class:`bicyclegan_pl.nets.siamese.GlobalDiscriminator`.
    """

    def __init__(
        self, input_nc: int, image_size: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance"
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1; got {n_layers}")
        final, remainder = divmod(image_size, 2**n_layers)
        if remainder or final < 2:
            raise ValueError(
                f"GlobalDiscriminator: image_size {image_size} must halve n_layers={n_layers} times to 2x2 "
                f"features or more (a multiple of {2 ** (n_layers + 1)}); lower n_layers"
            )
        self.image_size = image_size
        norm_layer = get_norm_layer(norm)
        use_bias = norm != "batch"
        layers = first_block(input_nc, ndf)
        multiplier = 1
        for n in range(1, n_layers):
            previous, multiplier = multiplier, min(2**n, MAX_CHANNEL_MULTIPLIER)
            layers += [
                nn.Conv2d(ndf * previous, ndf * multiplier, kernel_size=4, stride=2, padding=1, bias=use_bias),
                norm_layer(ndf * multiplier),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.logit = nn.Linear(ndf * multiplier * final * final, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"GlobalDiscriminator was built for {self.image_size}x{self.image_size} images; "
                f"got {tuple(x.shape[-2:])}"
            )
        return self.logit(self.features(x).flatten(1))
