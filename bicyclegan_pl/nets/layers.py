"""Small pieces shared by the generators, encoders and discriminators.

Normalisation and activation are chosen by name in configs, so they are built through factories
here; the latent-code helpers keep the "tile z and concatenate" convention in one place.
"""

import functools
from collections.abc import Callable

import torch
from torch import nn

NormFactory = Callable[[int], nn.Module]
ActivationFactory = Callable[[], nn.Module]


def get_norm_layer(name: str) -> NormFactory:
    """Return a factory `channels -> normalisation module` for the name used in configs.

    'instance' and 'batch' follow junyanz (instance: no affine, no running stats; batch: affine,
    running stats). 'none' yields nn.Identity so callers never branch on a missing layer.
    """
    if name == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if name == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if name == "none":
        return lambda channels: nn.Identity()
    raise ValueError(f"unknown norm {name!r}; expected 'instance', 'batch' or 'none'")


def get_activation(name: str) -> ActivationFactory:
    """Return a factory for the generator's up-path activation (junyanz option `nl`).

    The modules are in-place, as in the reference: callers apply them only to tensors that
    nothing else reads afterwards (fresh concatenations, convolution or normalisation outputs).
    """
    if name == "relu":
        return functools.partial(nn.ReLU, inplace=True)
    if name == "lrelu":
        return functools.partial(nn.LeakyReLU, negative_slope=0.2, inplace=True)
    if name == "elu":
        return functools.partial(nn.ELU, inplace=True)
    raise ValueError(f"unknown activation {name!r}; expected 'relu', 'lrelu' or 'elu'")


def upsample_layers(in_channels: int, out_channels: int, mode: str) -> list[nn.Module]:
    """Layers that double the resolution: junyanz `upsampleLayer` ('basic' or 'bilinear').

    'bilinear' (resize then 3x3 convolution) avoids the checkerboard artefacts a transposed
    convolution can produce.
    """
    if mode == "basic":
        return [nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)]
    if mode == "bilinear":
        return [
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=0),
        ]
    raise ValueError(f"unknown upsample {mode!r}; expected 'basic' or 'bilinear'")


def concat_latent(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Tile z (B, nz) over the height and width of x and append it as extra channels."""
    batch, nz = z.shape
    z_map = z.view(batch, nz, 1, 1).expand(batch, nz, x.shape[2], x.shape[3])
    return torch.cat([x, z_map], dim=1)


def check_latent(z: torch.Tensor | None, nz: int, batch: int) -> None:
    """Fail early with a clear message instead of a shape error deep inside the network."""
    if nz == 0:
        return
    if z is None:
        raise ValueError(f"this generator was built with nz={nz} and needs a latent code z")
    if tuple(z.shape) != (batch, nz):
        raise ValueError(f"z must have shape (batch, nz) = ({batch}, {nz}); got {tuple(z.shape)}")


def check_divisible(x: torch.Tensor, factor: int, network: str, setting: str) -> None:
    """Raise if the image size is not a multiple of the network's total down-sampling factor.

    Otherwise the up-sampled features would not line up with the input (or the skip connections).
    """
    height, width = x.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(
            f"{network} with {setting} down-samples by {factor}, so the image height and width "
            f"must be multiples of {factor}; got {height}x{width}"
        )
