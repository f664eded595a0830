"""Generators G(A, z) -> B for BicycleGAN-style systems; all end in tanh, so images lie in [-1, 1].

- UnetGenerator: junyanz G_Unet_add_all / G_Unet_add_input (the BicycleGAN reference).
- ResnetLatentGenerator: seed 000's final generator, a CycleGAN ResNet that sees z everywhere.
- PlainGenerator: seed 001's "vanilla generator" baseline, a U-Net without skip connections.
"""

import torch
from torch import nn

from bicyclegan_pl.nets.layers import (
    NormFactory,
    check_divisible,
    check_latent,
    concat_latent,
    get_activation,
    get_norm_layer,
    upsample_layers,
)

MAX_CHANNEL_MULTIPLIER = 8  # ngf * 8 caps the U-Net width, as in the reference


def _unet_channels(depth: int, ngf: int) -> tuple[int, int]:
    """(channels entering, channels after the down-convolution) of the U-Net level at `depth` > 0."""
    outer = ngf * min(2 ** (depth - 1), MAX_CHANNEL_MULTIPLIER)
    inner = ngf * min(2**depth, MAX_CHANNEL_MULTIPLIER)
    return outer, inner


def _check_num_downs(num_downs: int) -> None:
    if num_downs < 2:
        raise ValueError(f"num_downs must be at least 2 (an outermost and an innermost level); got {num_downs}")


class UnetBlock(nn.Module):
    """One U-Net level: down-sample, run the inner levels, up-sample, concatenate the skip.

    With nz > 0 the tiled z is concatenated to this level's input before its down-convolution
    (junyanz UnetBlock_with_z); the skip carries the input without z. With nz == 0 this is the
    pix2pix block (junyanz UnetBlock). The reference applies LeakyReLU(inplace=True) to the block
    input; without z that tensor *is* the skip, so reference skips carry LeakyReLU(x) when no z is
    concatenated and x itself otherwise. We reproduce both cases explicitly rather than through an
    in-place side effect. (With nl='relu' the two coincide, since the next up-path ReLU maps
    LeakyReLU(x) and x alike; with 'lrelu' or 'elu' they differ.)
    """

    def __init__(
        self,
        input_nc: int,
        outer_nc: int,
        inner_nc: int,
        nz: int,
        submodule: "UnetBlock | None",
        outermost: bool,
        norm_layer: NormFactory,
        activation: str,
        use_dropout: bool,
        upsample: str,
    ) -> None:
        super().__init__()
        innermost = submodule is None
        self.nz = nz
        self.outermost = outermost
        # The outermost level convolves the image directly; the others pre-activate (down path is
        # always LeakyReLU(0.2) in the reference). Not in-place: its input may be the skip.
        self.down_activation = nn.Identity() if outermost else nn.LeakyReLU(0.2)
        down: list[nn.Module] = [nn.Conv2d(input_nc + nz, inner_nc, kernel_size=4, stride=2, padding=1)]
        # No down-norm on the raw image (outermost) nor on the 1x1 bottleneck (innermost), as in the reference.
        if not (outermost or innermost):
            down.append(norm_layer(inner_nc))
        self.down = nn.Sequential(*down)
        self.submodule = submodule
        up_in = inner_nc if innermost else 2 * inner_nc  # inner levels return [up, skip]
        up: list[nn.Module] = [get_activation(activation)(), *upsample_layers(up_in, outer_nc, upsample)]
        if outermost:
            up.append(nn.Tanh())
        else:
            up.append(norm_layer(outer_nc))
            if use_dropout:
                up.append(nn.Dropout(0.5))
        self.up = nn.Sequential(*up)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        block_input = concat_latent(x, z) if self.nz else x
        activated = self.down_activation(block_input)
        hidden = self.down(activated)
        if self.submodule is not None:
            hidden = self.submodule(hidden, z)
        output = self.up(hidden)
        if self.outermost:
            return output
        skip = x if self.nz else activated
        return torch.cat([output, skip], dim=1)


class UnetGenerator(nn.Module):
    """U-Net generator of the BicycleGAN reference; z enters every level ('all') or the input only.

    `num_downs` levels each halve the resolution, so the bottleneck is 1x1 when
    2**num_downs equals the image size (8 for 256 px as junyanz unet_256, 6 for 64 px).
    Dropout (if enabled) sits after the up-normalisation of the levels whose width is at the
    ngf*8 cap, except the innermost: the three 512-channel levels of unet_256.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        nz: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "instance",
        nl: str = "relu",
        use_dropout: bool = False,
        upsample: str = "basic",
        where_add: str = "all",
    ) -> None:
        super().__init__()
        _check_num_downs(num_downs)
        if where_add not in ("all", "input"):
            raise ValueError(f"unknown where_add {where_add!r}; expected 'all' or 'input'")
        self.nz = nz
        self.num_downs = num_downs
        norm_layer = get_norm_layer(norm)
        block: UnetBlock | None = None
        for depth in reversed(range(num_downs)):  # built inside-out, like the reference
            outermost, innermost = depth == 0, depth == num_downs - 1
            if outermost:
                block_input_nc, block_output_nc, inner_nc = input_nc, output_nc, ngf
            else:
                block_input_nc, inner_nc = _unet_channels(depth, ngf)
                block_output_nc = block_input_nc
            at_width_cap = not outermost and block_input_nc == ngf * MAX_CHANNEL_MULTIPLIER
            block = UnetBlock(
                input_nc=block_input_nc,
                outer_nc=block_output_nc,
                inner_nc=inner_nc,
                nz=nz if (where_add == "all" or outermost) else 0,
                submodule=block,
                outermost=outermost,
                norm_layer=norm_layer,
                activation=nl,
                use_dropout=use_dropout and at_width_cap and not innermost,
                upsample=upsample,
            )
        self.model = block

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        check_divisible(x, 2**self.num_downs, "UnetGenerator", f"num_downs={self.num_downs}")
        check_latent(z, self.nz, x.shape[0])
        return self.model(x, z if self.nz else None)


class LatentResidualBlock(nn.Module):
    """CycleGAN residual block that also receives z: [pad, conv3, norm, + shift(z), ReLU, pad, conv3, norm] + x.

    Concatenating the tiled z to the block input would be useless here: reflection padding keeps
    the tiled z spatially constant, so the convolution adds a per-channel constant, which the
    InstanceNorm right after it subtracts exactly. z therefore enters after the first norm and
    before the ReLU, as a per-channel shift computed by a linear layer (the same as concatenating
    the tiled z there and applying a 1x1 convolution to its channels). The ReLU turns that shift
    into a spatially varying change, and the identity path carries x unchanged.
    """

    def __init__(self, dim: int, nz: int, norm_layer: NormFactory, use_bias: bool, use_dropout: bool) -> None:
        super().__init__()
        self.convolve = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, bias=use_bias), norm_layer(dim)
        )
        self.latent_shift = nn.Linear(nz, dim) if nz else None
        rest: list[nn.Module] = [nn.ReLU(inplace=True)]
        if use_dropout:
            rest.append(nn.Dropout(0.5))
        rest += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, bias=use_bias), norm_layer(dim)]
        self.rest = nn.Sequential(*rest)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        hidden = self.convolve(x)
        if self.latent_shift is not None:
            hidden = hidden + self.latent_shift(z)[:, :, None, None]
        return x + self.rest(hidden)


class ResnetLatentGenerator(nn.Module):
    """Seed 000's generator: the CycleGAN ResNet generator "modified to incorporate latent integration".

    z is concatenated to the input image and fed to every residual block (see LatentResidualBlock).
    The seed reports that removing the InstanceNorm of the first 7x7 block helped ("it could be
    disrupting the interaction between latent dimension and input"); `first_block_norm=False` is
    that ablation. Indeed, with that norm the z concatenated to the image has no effect at all:
    the reflection-padded, spatially constant z channels only add a per-channel constant to the
    convolution output, which the InstanceNorm removes.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        nz: int,
        ngf: int = 64,
        n_blocks: int = 6,
        n_downsampling: int = 2,
        norm: str = "instance",
        first_block_norm: bool = True,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.nz = nz
        self.n_downsampling = n_downsampling
        norm_layer = get_norm_layer(norm)
        use_bias = norm != "batch"  # CycleGAN: a bias right before BatchNorm is cancelled by it
        encoder: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc + nz, ngf, kernel_size=7, bias=use_bias or not first_block_norm),
        ]
        if first_block_norm:
            encoder.append(norm_layer(ngf))
        encoder.append(nn.ReLU(inplace=True))
        for level in range(n_downsampling):
            channels = ngf * 2**level
            encoder += [
                nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=use_bias),
                norm_layer(2 * channels),
                nn.ReLU(inplace=True),
            ]
        self.encoder = nn.Sequential(*encoder)
        dim = ngf * 2**n_downsampling
        self.blocks = nn.ModuleList(
            LatentResidualBlock(dim, nz, norm_layer, use_bias, use_dropout) for _ in range(n_blocks)
        )
        decoder: list[nn.Module] = []
        for level in reversed(range(n_downsampling)):
            channels = ngf * 2 ** (level + 1)
            decoder += [
                nn.ConvTranspose2d(
                    channels, channels // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(channels // 2),
                nn.ReLU(inplace=True),
            ]
        decoder += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7), nn.Tanh()]
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        check_divisible(
            x, 2**self.n_downsampling, "ResnetLatentGenerator", f"n_downsampling={self.n_downsampling}"
        )
        check_latent(z, self.nz, x.shape[0])
        hidden = self.encoder(concat_latent(x, z) if self.nz else x)
        for block in self.blocks:
            hidden = block(hidden, z)
        return self.decoder(hidden)


class PlainGenerator(nn.Module):
    """Seed 001's "vanilla generator" baseline: the U-Net's encoder-decoder without skip connections.

    Same depth, widths, kernels, norms and activations as UnetGenerator (where_add='input'), so
    comparing the two isolates the effect of the skip connections. z is concatenated to the input.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        nz: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        _check_num_downs(num_downs)
        self.nz = nz
        self.num_downs = num_downs
        norm_layer = get_norm_layer(norm)
        encoder: list[nn.Module] = [nn.Conv2d(input_nc + nz, ngf, kernel_size=4, stride=2, padding=1)]
        decoder: list[nn.Module] = [nn.ReLU(inplace=True), *upsample_layers(ngf, output_nc, "basic"), nn.Tanh()]
        for depth in range(1, num_downs):
            outer_nc, inner_nc = _unet_channels(depth, ngf)
            innermost = depth == num_downs - 1
            encoder += [
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(outer_nc, inner_nc, kernel_size=4, stride=2, padding=1),
            ]
            if not innermost:  # as in the U-Net: the 1x1 bottleneck is not normalised
                encoder.append(norm_layer(inner_nc))
            # The decoder is built from the inside out, mirroring the encoder.
            decoder = [
                nn.ReLU(inplace=True),
                *upsample_layers(inner_nc, outer_nc, "basic"),
                norm_layer(outer_nc),
                *decoder,
            ]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        check_divisible(x, 2**self.num_downs, "PlainGenerator", f"num_downs={self.num_downs}")
        check_latent(z, self.nz, x.shape[0])
        return self.decoder(self.encoder(concat_latent(x, z) if self.nz else x))


def resnet_generator(
    input_nc: int,
    output_nc: int,
    ngf: int = 64,
    n_blocks: int = 9,
    n_downsampling: int = 2,
    norm: str = "instance",
    use_dropout: bool = False,
) -> ResnetLatentGenerator:
    """CycleGAN's ResnetGenerator (resnet_9blocks; 6 blocks for small images): the latent
    generator without a latent code has exactly its layers (c7s1-64, d128, d256, n_blocks x
    R256, u128, u64, c7s1-out, tanh; reflection padding; biases only without BatchNorm)."""
    return ResnetLatentGenerator(
        input_nc, output_nc, nz=0, ngf=ngf, n_blocks=n_blocks, n_downsampling=n_downsampling, norm=norm,
        use_dropout=use_dropout,
    )
