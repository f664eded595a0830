"""Plain nn.Modules (no Lightning, no Hydra): generators, encoders, discriminators, initialisation."""

from bicyclegan_pl.nets.discriminators import GlobalDiscriminator, MultiscalePatchDiscriminator, PatchDiscriminator
from bicyclegan_pl.nets.encoders import ResNetEncoder
from bicyclegan_pl.nets.generators import PlainGenerator, ResnetLatentGenerator, UnetGenerator
from bicyclegan_pl.nets.init import init_weights
from bicyclegan_pl.nets.layers import get_norm_layer

__all__ = [
    "GlobalDiscriminator",
    "MultiscalePatchDiscriminator",
    "PatchDiscriminator",
    "PlainGenerator",
    "ResNetEncoder",
    "ResnetLatentGenerator",
    "UnetGenerator",
    "get_norm_layer",
    "init_weights",
]
