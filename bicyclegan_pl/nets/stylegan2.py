"""StyleGAN2 generator and discriminator in plain PyTorch, weight-compatible with rosinality/stylegan2-pytorch.

CLIP2GAN needs a frozen unconditional generator. Pretrained StyleGAN2 weights circulate mostly as
rosinality checkpoints (``torch.save({"g_ema": ..., "latent_avg": ..., "g": ..., "d": ...})``), so
every parameter and buffer here keeps the name and shape it has in rosinality's ``model.py``: such
a checkpoint loads with a strict ``load_state_dict``. The math is rosinality's too (equalised
learning rate, modulated convolutions with demodulation, FIR up/down-sampling, skip ToRGBs, the
residual discriminator with minibatch standard deviation). Where rosinality compiles CUDA
extensions (fused bias + leaky ReLU, upfirdn2d, conv2d_gradfix) we use the pure-torch reference
forms it ships for CPU, so the networks run on any device and dtype, and double backward (R1)
works through plain autograd.

Class names are ours; attribute names (``style``, ``input``, ``conv1``, ``to_rgb1``, ``convs``,
``upsamples``, ``to_rgbs``, ``noises.noise_{i}``, ``modulation``, ``activate``, ...) are
rosinality's, because they are the state-dict keys.

``load_rosinality_checkpoint`` builds a generator from such a file; ``convert_stylegan2_ada_state_dict``
renames an NVlabs stylegan2-ada-pytorch ``G_ema.state_dict()`` into the same layout.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.nets.latent_generators import LatentGenerator

LEAKY_RELU_SLOPE = 0.2
LEAKY_RELU_GAIN = math.sqrt(2)  # keeps the activations' second moment through a leaky ReLU
DEMODULATION_EPSILON = 1e-8
DEFAULT_BLUR_KERNEL = (1, 3, 3, 1)
MINIBATCH_STDDEV_GROUP = 4
LARGEST_TABLED_RESOLUTION = 1024
NOISE_MODES = ("const", "random")


def stylegan2_channels(
    channel_multiplier: int = 2,
    channels: Mapping[int | str, int] | None = None,
    max_channels: int | None = None,
) -> dict[int, int]:
    """Feature channels per resolution: rosinality's table, optionally capped and overridden.

    With no override this is exactly rosinality's table (so its checkpoints load). ``max_channels``
    caps every entry and ``channels`` replaces entries by resolution (keys may be strings, as
    YAML configs give them): both exist so that tiny networks train on a CPU.
    """
    table = {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }
    if max_channels is not None:
        if max_channels < 1:
            raise ValueError(f"max_channels must be positive; got {max_channels}")
        table = {resolution: min(count, max_channels) for resolution, count in table.items()}
    for resolution, count in (channels or {}).items():
        table[int(resolution)] = int(count)
    return table


def _log2_size(size: int, channel_table: Mapping[int, int]) -> int:
    """log2 of an image size, refusing sizes the networks cannot be built for."""
    if size < 4 or size & (size - 1):
        raise ValueError(f"StyleGAN2 image size must be a power of two, at least 4; got {size}")
    log_size = size.bit_length() - 1
    missing = [2**level for level in range(2, log_size + 1) if 2**level not in channel_table]
    if missing:
        raise ValueError(
            f"no channel count for resolution(s) {missing} (the table stops at {LARGEST_TABLED_RESOLUTION}); "
            "give them with `channels`"
        )
    return log_size


def make_blur_kernel(taps: Sequence[float]) -> Tensor:
    """A normalised 2-D FIR kernel: the outer product of 1-D taps (or a 2-D list as is), summing to one."""
    kernel = torch.tensor(taps, dtype=torch.float32)
    if kernel.ndim == 1:
        kernel = kernel[None, :] * kernel[:, None]
    return kernel / kernel.sum()


def upfirdn2d(input: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion, pad, convolve with an FIR kernel, downsample by dropping pixels.

    rosinality's ``upfirdn2d_native``: every channel of every image is filtered alone.
    ``pad`` = (before, after), the same for both axes; negative values crop. The kernel is
    flipped, so this is a true convolution (as the CUDA op computes it). rosinality filters a
    (batch * channels, 1, H, W) stack; a depthwise convolution (groups = channels) gives the same
    values and is about 20 times faster on CPU, where the single-channel convolution's backward
    took two thirds of a StyleGAN2 training step.
    """
    pad_before, pad_after = pad
    batch, channels, height, width = input.shape
    kernel_height, kernel_width = kernel.shape
    out = input.reshape(batch, channels, height, 1, width, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
    out = out.reshape(batch, channels, height * up, width * up)
    out = F.pad(out, [max(pad_before, 0), max(pad_after, 0), max(pad_before, 0), max(pad_after, 0)])
    out = out[
        :,
        :,
        max(-pad_before, 0) : out.shape[2] - max(-pad_after, 0),
        max(-pad_before, 0) : out.shape[3] - max(-pad_after, 0),
    ]
    weight = torch.flip(kernel, [0, 1]).reshape(1, 1, kernel_height, kernel_width).to(out.dtype)
    out = F.conv2d(out, weight.expand(channels, 1, kernel_height, kernel_width), groups=channels)
    return out[:, :, ::down, ::down]


def fused_leaky_relu(
    input: Tensor, bias: Tensor | None = None, negative_slope: float = LEAKY_RELU_SLOPE, scale: float = LEAKY_RELU_GAIN
) -> Tensor:
    """leaky_relu(input + bias, 0.2) * sqrt(2), the bias broadcast along dimension 1.

    rosinality fuses this into one CUDA kernel; its CPU fallback, which this is, gives the same values.
    """
    if bias is not None:
        rest = [1] * (input.ndim - 2)
        input = input + bias.reshape(1, bias.shape[0], *rest)
    return F.leaky_relu(input, negative_slope=negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """A per-channel bias followed by the gain-corrected leaky ReLU (rosinality ``FusedLeakyReLU``)."""

    def __init__(self, channels: int, bias: bool = True) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, input: Tensor) -> Tensor:
        return fused_leaky_relu(input, self.bias)


class PixelNorm(nn.Module):
    """Scales each latent vector to unit root-mean-square, so z's length does not leak into w."""

    def forward(self, input: Tensor) -> Tensor:
        return input * torch.rsqrt(torch.mean(input**2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """Doubles the resolution with an FIR filter (zero insertion, then blur): the ToRGB skip path."""

    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        # Zero insertion keeps 1 / factor**2 of the energy; the kernel gain restores it.
        self.register_buffer("kernel", make_blur_kernel(kernel) * (factor**2))
        excess = self.kernel.shape[0] - factor
        self.pad = ((excess + 1) // 2 + factor - 1, excess // 2)

    def forward(self, input: Tensor) -> Tensor:
        return upfirdn2d(input, self.kernel, up=self.factor, down=1, pad=self.pad)


class Blur(nn.Module):
    """An FIR low-pass filter that anti-aliases the strided (transposed) convolutions around it."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        blur_kernel = make_blur_kernel(kernel)
        if upsample_factor > 1:
            blur_kernel = blur_kernel * (upsample_factor**2)
        self.register_buffer("kernel", blur_kernel)
        self.pad = pad

    def forward(self, input: Tensor) -> Tensor:
        return upfirdn2d(input, self.kernel, pad=self.pad)


class EqualizedConv2d(nn.Module):
    """Conv2d with the equalised learning rate: N(0, 1) weights scaled by 1/sqrt(fan_in) at run time.

    Adam then moves every layer at the same relative speed, whatever its fan-in (rosinality ``EqualConv2d``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, input: Tensor) -> Tensor:
        return F.conv2d(input, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Linear layer with the equalised learning rate and a learning-rate multiplier.

    Weights are stored divided by ``lr_mul`` and multiplied back at run time, so the mapping
    network (lr_mul 0.01) learns 100 times slower than Adam's step would make it (rosinality
    ``EqualLinear``). With ``activate`` the bias goes through the fused leaky ReLU.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activate: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_features).fill_(bias_init)) if bias else None
        self.activate = activate
        self.scale = (1 / math.sqrt(in_features)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, input: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activate:
            return fused_leaky_relu(F.linear(input, self.weight * self.scale), bias)
        return F.linear(input, self.weight * self.scale, bias=bias)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's convolution: the style scales the weight per input channel (modulation), and
    each output filter is renormalised to unit norm (demodulation), replacing AdaIN without its
    droplet artefacts.

    Each sample gets its own weights, applied in one grouped convolution. Upsampling is a
    stride-2 transposed convolution followed by a blur, downsampling a blur followed by a stride-2
    convolution, as in rosinality's fused path (the only one its generator uses).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        downsample: bool = False,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
    ) -> None:
        super().__init__()
        if upsample and downsample:
            raise ValueError("a modulated convolution upsamples or downsamples, not both")
        self.kernel_size = kernel_size
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.upsample = upsample
        self.downsample = downsample
        factor = 2
        if upsample:
            excess = (len(blur_kernel) - factor) - (kernel_size - 1)
            pad = ((excess + 1) // 2 + factor - 1, excess // 2 + 1)
            self.blur = Blur(blur_kernel, pad=pad, upsample_factor=factor)
        if downsample:
            excess = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((excess + 1) // 2, excess // 2))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        # bias_init=1: styles start at one, so the untrained layer is a plain convolution.
        self.modulation = EqualizedLinear(style_dim, in_channels, bias_init=1)
        self.demodulate = demodulate

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, {self.kernel_size}, "
            f"upsample={self.upsample}, downsample={self.downsample}, demodulate={self.demodulate}"
        )

    def forward(self, input: Tensor, style: Tensor) -> Tensor:
        batch, in_channels, height, width = input.shape
        style = self.modulation(style).reshape(batch, 1, in_channels, 1, 1)
        weight = self.scale * self.weight * style
        if self.demodulate:
            demodulation = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + DEMODULATION_EPSILON)
            weight = weight * demodulation.reshape(batch, self.out_channels, 1, 1, 1)
        kernel = self.kernel_size
        weight = weight.reshape(batch * self.out_channels, in_channels, kernel, kernel)
        if self.upsample:
            input = input.reshape(1, batch * in_channels, height, width)
            # Back to 5-D, then in/out swapped for the transposed convolution. Going through the
            # grouped layout first, as rosinality does, makes the gradients round identically.
            weight = weight.reshape(batch, self.out_channels, in_channels, kernel, kernel)
            weight = weight.transpose(1, 2).reshape(batch * in_channels, self.out_channels, kernel, kernel)
            out = F.conv_transpose2d(input, weight, padding=0, stride=2, groups=batch)
            out = out.reshape(batch, self.out_channels, out.shape[2], out.shape[3])
            return self.blur(out)
        if self.downsample:
            input = self.blur(input)
            input = input.reshape(1, batch * in_channels, input.shape[2], input.shape[3])
            out = F.conv2d(input, weight, padding=0, stride=2, groups=batch)
        else:
            input = input.reshape(1, batch * in_channels, height, width)
            out = F.conv2d(input, weight, padding=self.padding, groups=batch)
        return out.reshape(batch, self.out_channels, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    """Adds single-channel noise with a learned strength: the stochastic detail (hair, pores) that w does not set."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            batch, _, height, width = image.shape
            noise = image.new_empty(batch, 1, height, width).normal_()
        return image + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 tensor the synthesis starts from; all variation then comes from the styles."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, like: Tensor) -> Tensor:
        return self.input.repeat(like.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated 3x3 convolution, noise, bias and leaky ReLU: one synthesis layer, one entry of w+."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim,
            upsample=upsample, blur_kernel=blur_kernel, demodulate=demodulate,
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, input: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.activate(self.noise(self.conv(input, style), noise=noise))


class ToRGB(nn.Module):
    """1x1 modulated convolution (no demodulation) to RGB, added to the upsampled image of the level below.

    The image is a sum over resolutions (StyleGAN2's skip generator), so coarse levels set layout
    and fine levels add detail.
    """

    def __init__(
        self, in_channels: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, input: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(input, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator (config E/F skip architecture): mapping network z -> w, then synthesis
    from a learned constant, one style per layer.

    Same constructor and ``forward`` as rosinality's ``Generator`` (its checkpoints load strictly),
    plus ``channels`` / ``max_channels`` for tiny CPU configurations, and a w+ interface for
    our use: ``z_to_w`` and ``synthesize(ws)`` with ``ws`` of shape (batch, num_ws, w_dim).

    w+ index of each layer: 0 the 4x4 conv, 1 the 4x4 ToRGB; then for each resolution 8, 16, ...
    (level k = 0, 1, ...): 2k + 1 the upsampling conv, 2k + 2 the second conv, 2k + 3 its ToRGB
    (which shares its index with the next level's upsampling conv, as in rosinality and NVlabs).
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
        lr_mlp: float = 0.01,
        channels: Mapping[int | str, int] | None = None,
        max_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.size = size
        self.style_dim = style_dim
        self.channels = stylegan2_channels(channel_multiplier, channels, max_channels)
        self.log_size = _log2_size(size, self.channels)
        blur_kernel = list(blur_kernel)

        self.style = nn.Sequential(
            PixelNorm(), *[EqualizedLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True) for _ in range(n_mlp)]
        )
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        # Always empty; kept because rosinality's Generator has it, so module listings line up.
        self.upsamples = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_index in range(self.num_layers):
            resolution = 2 ** ((layer_index + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_index}", torch.randn(1, 1, resolution, resolution))

        in_channels = self.channels[4]
        for level in range(3, self.log_size + 1):
            out_channels = self.channels[2**level]
            self.convs.append(StyledConv(in_channels, out_channels, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channels, out_channels, 3, style_dim, blur_kernel=blur_kernel))
            # rosinality does not pass blur_kernel to the ToRGBs (they keep [1, 3, 3, 1]); neither
            # do we, so that checkpoints trained with another kernel still load.
            self.to_rgbs.append(ToRGB(out_channels, style_dim))
            in_channels = out_channels

        self.n_latent = self.log_size * 2 - 2

    @property
    def num_ws(self) -> int:
        """Number of per-layer latents in w+ (rosinality's ``n_latent``)."""
        return self.n_latent

    @property
    def w_dim(self) -> int:
        return self.style_dim

    @property
    def z_dim(self) -> int:
        return self.style_dim

    def z_to_w(self, z: Tensor) -> Tensor:
        """The mapping network (rosinality ``get_latent``): (batch, z_dim) -> (batch, w_dim)."""
        return self.style(z)

    def mean_latent(self, num_samples: int) -> Tensor:
        """Mean w of ``num_samples`` random z, shape (1, w_dim): the centre that truncation pulls towards."""
        z = torch.randn(num_samples, self.style_dim, device=self.input.input.device, dtype=self.input.input.dtype)
        return self.style(z).mean(0, keepdim=True)

    def make_noise(self) -> list[Tensor]:
        """Fresh noise images, one per layer (the shapes of the ``noises`` buffers), e.g. to optimise in projection."""
        return [torch.randn_like(getattr(self.noises, f"noise_{index}")) for index in range(self.num_layers)]

    def synthesize(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        """Images (batch, 3, size, size), roughly in [-1, 1] and not clamped, from w+ latents (batch, num_ws, w_dim).

        ``noise_mode="const"`` uses the stored noise buffers, so the same ws always give the same
        image; ``"random"`` draws new noise per call and sample.
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"ws must have shape (batch, {self.num_ws}, {self.w_dim}) for this generator; got {tuple(ws.shape)}"
            )
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}; got {noise_mode!r}")
        return self._synthesis(ws, self._noise_inputs(randomize=noise_mode == "random"))

    def forward(
        self,
        styles: Sequence[Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1,
        truncation_latent: Tensor | None = None,
        input_is_latent: bool = False,
        noise: Sequence[Tensor | None] | None = None,
        randomize_noise: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """rosinality's ``Generator.forward``: ``(image, w+ or None)``.

        ``styles`` is a list of one z (or w with ``input_is_latent``), or two for style mixing
        (the second takes over from ``inject_index``, random if None). A single 3-D w+ with
        ``input_is_latent`` is used as is. ``truncation`` < 1 pulls styles towards
        ``truncation_latent``. ``noise`` gives one image per layer; otherwise ``randomize_noise``
        chooses fresh noise or the stored buffers.
        """
        if not input_is_latent:
            styles = [self.style(style) for style in styles]
        if noise is None:
            noise = self._noise_inputs(randomize=randomize_noise)
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. mean_latent(4096))")
            styles = [truncation_latent + truncation * (style - truncation_latent) for style in styles]

        if len(styles) < 2:
            inject_index = self.n_latent
            latent = styles[0] if styles[0].ndim >= 3 else styles[0].unsqueeze(1).repeat(1, inject_index, 1)
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            latent = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
            latent2 = styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)
            latent = torch.cat([latent, latent2], 1)

        image = self._synthesis(latent, noise)
        return (image, latent) if return_latents else (image, None)

    def _noise_inputs(self, randomize: bool) -> list[Tensor | None]:
        """None per layer (NoiseInjection then draws fresh noise) or the stored constant buffers."""
        if randomize:
            return [None] * self.num_layers
        return [getattr(self.noises, f"noise_{index}") for index in range(self.num_layers)]

    def _synthesis(self, latent: Tensor, noise: Sequence[Tensor | None]) -> Tensor:
        out = self.input(latent)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        index = 1
        for conv_up, conv, noise_up, noise_same, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv_up(out, latent[:, index], noise=noise_up)
            out = conv(out, latent[:, index + 1], noise=noise_same)
            skip = to_rgb(out, latent[:, index + 2], skip)
            index += 2
        return skip


class ConvLayer(nn.Sequential):
    """[blur,] equalised conv [, bias + leaky ReLU]: the discriminator's building block.

    An nn.Sequential, as in rosinality, because the state-dict keys carry the positions
    (``convs.1.conv2.1.weight``: the conv after the blur).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            excess = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((excess + 1) // 2, excess // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualizedConv2d(
                in_channels, out_channels, kernel_size, padding=padding, stride=stride, bias=bias and not activate
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 convs (the second downsamples) plus a 1x1 downsampling skip, summed and divided by sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # rosinality's ResBlock takes a blur_kernel but its layers use the default one; so do ours.
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, activate=False, bias=False)

    def forward(self, input: Tensor) -> Tensor:
        return (self.conv2(self.conv1(input)) + self.skip(input)) / math.sqrt(2)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (rosinality ``Discriminator``): one raw score per image, shape (batch, 1).

    A minibatch standard-deviation channel (groups of up to 4 images) lets it see a lack of
    variety in a batch. The batch size must be a multiple of the group size min(batch, 4).
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
        channels: Mapping[int | str, int] | None = None,
        max_channels: int | None = None,
    ) -> None:
        super().__init__()
        if tuple(blur_kernel) != DEFAULT_BLUR_KERNEL:
            # rosinality accepts the argument but its ResBlocks never use it; refuse rather than ignore it.
            raise ValueError(f"the StyleGAN2 discriminator always blurs with {list(DEFAULT_BLUR_KERNEL)}; got {blur_kernel}")
        table = stylegan2_channels(channel_multiplier, channels, max_channels)
        log_size = _log2_size(size, table)
        convs: list[nn.Module] = [ConvLayer(3, table[size], 1)]
        in_channels = table[size]
        for level in range(log_size, 2, -1):
            out_channels = table[2 ** (level - 1)]
            convs.append(ResidualBlock(in_channels, out_channels))
            in_channels = out_channels
        self.convs = nn.Sequential(*convs)
        self.stddev_group = MINIBATCH_STDDEV_GROUP
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_channels + 1, table[4], 3)
        self.final_linear = nn.Sequential(
            EqualizedLinear(table[4] * 4 * 4, table[4], activate=True),
            EqualizedLinear(table[4], 1),
        )

    def forward(self, input: Tensor) -> Tensor:
        out = self.convs(input)
        batch, channels, height, width = out.shape
        group = min(batch, self.stddev_group)
        if batch % group:
            raise ValueError(
                f"the minibatch standard deviation needs a batch size divisible by {group}; got {batch}"
            )
        stddev = out.reshape(group, -1, self.stddev_feat, channels // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
        stddev = stddev.repeat(group, 1, height, width)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear(out.reshape(batch, -1))


class StyleGAN2CheckpointError(UserError, ValueError):
    """A StyleGAN2 checkpoint that does not fit the generator asked for (the message says what to change)."""


def _describe_generator_state_dict(state_dict: Mapping[str, Tensor]) -> str:
    """The generator configuration a rosinality state dict was saved from, as constructor arguments."""
    to_rgb_levels = {int(match.group(1)) for key in state_dict if (match := re.match(r"to_rgbs\.(\d+)\.", key))}
    mapping_layers = {int(match.group(1)) for key in state_dict if (match := re.match(r"style\.(\d+)\.weight$", key))}
    modulation = state_dict.get("conv1.conv.modulation.weight")
    constant = state_dict.get("input.input")
    if modulation is None or constant is None:
        return "it does not look like a rosinality generator state dict (no conv1 / input keys)"
    size = 2 ** (len(to_rgb_levels) + 2)
    channels = {4: int(constant.shape[1])}
    for level in sorted(to_rgb_levels):
        weight = state_dict.get(f"convs.{2 * level}.conv.weight")
        if weight is not None:
            channels[2 ** (level + 3)] = int(weight.shape[1])
    arguments = f"size={size}, style_dim={int(modulation.shape[1])}, n_mlp={len(mapping_layers)}"
    for cap in (None, max(channels.values())):
        for multiplier in (1, 2, 4):
            table = stylegan2_channels(multiplier, max_channels=cap)
            if all(table[resolution] == count for resolution, count in channels.items()):
                capped = "" if cap is None else f", max_channels={cap}"
                if size < 64:
                    return f"it looks like {arguments}{capped} (channel_multiplier only matters from 64 px)"
                return f"it looks like {arguments}, channel_multiplier={multiplier}{capped}"
    return f"it looks like {arguments}, channels={channels}"


def _summarise_keys(keys: Sequence[str], limit: int = 10) -> str:
    """State-dict keys grouped by layer (``convs.6``, ``noises.noise_7``), so a message names every layer concerned."""
    layers = list(dict.fromkeys(".".join(key.split(".")[:2]) for key in keys))
    shown = ", ".join(layers[:limit]) + (f", ... ({len(layers)} layers in all)" if len(layers) > limit else "")
    return f"{shown} ({len(keys)} keys)"


def _load_checkpoint_file(path: str | os.PathLike[str]) -> Any:
    """torch.load without running arbitrary pickled code; rosinality training checkpoints also hold
    their argparse Namespace (``args``), which is allowed explicitly."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def load_rosinality_checkpoint(
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any],
    size: int,
    style_dim: int = 512,
    n_mlp: int = 8,
    channel_multiplier: int = 2,
    key: str | None = "g_ema",
    *,
    lr_mlp: float = 0.01,
    channels: Mapping[int | str, int] | None = None,
    max_channels: int | None = None,
    source: str | None = None,
) -> tuple[StyleGAN2Generator, Tensor | None]:
    """A generator with the weights of a rosinality checkpoint (strictly: every key, every shape),
    and the checkpoint's ``latent_avg`` (the mean w, for truncation) or None when it has none.

    ``path_or_dict`` is a file saved by rosinality's train.py / convert_weight.py, or the loaded
    dict. ``key`` chooses the generator inside it (``"g_ema"``, the averaged one for sampling,
    or ``"g"``); ``key=None`` takes ``path_or_dict`` itself as the state dict. The generator
    comes back on the CPU in eval mode. A mismatch raises ``StyleGAN2CheckpointError`` naming
    the file (``source`` names it when a loaded dict is given), the missing / unexpected /
    mis-shaped keys and the configuration the checkpoint appears to have.
    """
    if source is None:
        source = "the given checkpoint dict" if isinstance(path_or_dict, Mapping) else os.fspath(path_or_dict)
    checkpoint = path_or_dict if isinstance(path_or_dict, Mapping) else _load_checkpoint_file(path_or_dict)
    if key is None:
        state_dict = checkpoint
    elif key in checkpoint:
        state_dict = checkpoint[key]
    else:
        raise StyleGAN2CheckpointError(
            f"{source}: no {key!r} entry (it has {sorted(map(str, checkpoint))}); "
            "pass key='g' for the non-averaged generator, or key=None if the file is the state dict itself"
        )
    generator = StyleGAN2Generator(
        size, style_dim, n_mlp, channel_multiplier=channel_multiplier, lr_mlp=lr_mlp,
        channels=channels, max_channels=max_channels,
    )
    expected = generator.state_dict()
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    mismatched = [
        f"{name} {tuple(state_dict[name].shape)} vs {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in state_dict and state_dict[name].shape != tensor.shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {_summarise_keys(missing)}")
        if unexpected:
            problems.append(f"unexpected {_summarise_keys(unexpected)}")
        if mismatched:
            shown = ", ".join(mismatched[:6]) + (f", ... ({len(mismatched)} in all)" if len(mismatched) > 6 else "")
            problems.append(f"shape mismatch (file vs model): {shown}")
        overrides = "".join(
            f", {name}={value}" for name, value in (("channels", channels), ("max_channels", max_channels)) if value is not None
        )
        raise StyleGAN2CheckpointError(
            f"{source}: {key or 'the state dict'} does not fit StyleGAN2Generator(size={size}, style_dim={style_dim}, "
            f"n_mlp={n_mlp}, channel_multiplier={channel_multiplier}{overrides}): {'; '.join(problems)}. "
            f"{_describe_generator_state_dict(state_dict)}: try those arguments"
        )
    generator.load_state_dict(state_dict, strict=True)
    latent_avg = checkpoint.get("latent_avg") if key is not None else None
    return generator.eval(), latent_avg


def convert_stylegan2_ada_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an NVlabs stylegan2-ada-pytorch ``G_ema.state_dict()`` into rosinality's layout.

    Unpickle the ``.pkl`` with NVlabs' own code (``legacy.load_network_pkl``; the pickle holds
    their classes), then ``torch.save(G_ema.state_dict(), "g_ema.pt")``; load that file with
    ``torch.load`` and convert. The mean w, needed for truncation, is ``state_dict["mapping.w_avg"]``
    (rosinality's ``latent_avg``), so a rosinality checkpoint is
    ``{"g_ema": convert_stylegan2_ada_state_dict(sd), "latent_avg": sd["mapping.w_avg"]}``.

    The networks compute the same function, layer for layer (NVlabs ``training/networks.py``):
    mapping ``fc{i}`` = ``style.{i+1}`` (both store weight * lr_multiplier**-1 and multiply the
    gains back at run time; z is normalised the same way); synthesis block ``b{res}``'s ``conv0``
    (the upsampling layer), ``conv1`` and ``torgb`` = ``convs.{2k}``, ``convs.{2k+1}`` and
    ``to_rgbs.{k}`` for res = 8 * 2**k, with ``b4`` the ``input`` / ``conv1`` / ``to_rgb1``;
    ``affine`` = ``modulation``; ``noise_strength`` = ``noise.weight``, ``noise_const`` =
    ``noises.noise_{i}``; the bias of a conv layer = ``activate.bias``; ``resample_filter`` x 4
    = the blur and upsample kernels (NVlabs applies the gain up**2 at run time). No weight is
    flipped: NVlabs' upsampling layer runs ``conv_transpose2d`` on the unflipped weight
    (flip_weight=False, then (not flip_weight) inside conv2d_resample), as rosinality does.

    Differences that remain, all in rounding or in options rosinality does not have:
    - NVlabs does not scale a synthesis layer's weight by 1/sqrt(fan_in) before demodulation,
      rosinality does; the scale cancels except in the 1e-8 added to the squared norm, which is
      thus effectively 1e-8 * fan_in here (a relative change of the order of 1e-8).
    - ToRGB: NVlabs scales the styles by 1/sqrt(in_channels), rosinality the weight: the same
      product, rounded in another order.
    - NVlabs clamps conv outputs to +-conv_clamp (256 in its training configurations) and may
      run the highest resolutions in float16 (``num_fp16_res``); this generator never clamps and
      runs in the dtype it is given. Outputs match while activations stay below the clamp.
    - In training mode NVlabs modulates activations instead of weights (fused_modconv=False):
      the same function, rounded differently.

    Only the generator configuration rosinality has converts: skip architecture, 3 colour
    channels, no class conditioning, z_dim == w_dim and noise in every layer. Anything else
    (``mapping.embed``, ``b{res}.skip`` of the resnet architecture, ...) raises
    ``StyleGAN2CheckpointError`` naming the keys. Build the generator with
    ``n_mlp`` = the number of ``mapping.fc*`` layers and, when NVlabs' channel_base/channel_max
    give another table than rosinality's, ``channels={res: out_channels}``.
    """
    remaining = dict(state_dict)

    def take(name: str) -> Tensor:
        if name not in remaining:
            raise StyleGAN2CheckpointError(
                f"not a stylegan2-ada-pytorch G_ema state dict of the skip architecture: no {name!r}"
            )
        return remaining.pop(name)

    mapping_layers = sorted(
        int(match.group(1)) for name in state_dict if (match := re.fullmatch(r"mapping\.fc(\d+)\.weight", name))
    )
    resolutions = sorted(
        int(match.group(1)) for name in state_dict if (match := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", name))
    )
    if mapping_layers != list(range(len(mapping_layers))) or not resolutions:
        raise StyleGAN2CheckpointError(
            "not a stylegan2-ada-pytorch G_ema state dict: expected mapping.fc0 ... and synthesis.b4 ... keys"
        )
    if resolutions != [2**level for level in range(2, len(resolutions) + 2)]:
        raise StyleGAN2CheckpointError(f"synthesis blocks must be b4, b8, ... without gaps; got {resolutions}")

    converted: dict[str, Tensor] = {}
    for index in mapping_layers:
        converted[f"style.{index + 1}.weight"] = take(f"mapping.fc{index}.weight")
        converted[f"style.{index + 1}.bias"] = take(f"mapping.fc{index}.bias")
    take("mapping.w_avg")  # rosinality keeps it outside the state dict, as latent_avg

    def synthesis_layer(source: str, target: str, upsample: bool) -> Tensor:
        converted[f"{target}.conv.weight"] = take(f"{source}.weight").unsqueeze(0)
        if upsample:
            converted[f"{target}.conv.blur.kernel"] = take(f"{source}.resample_filter") * 4
        else:
            take(f"{source}.resample_filter")  # held by every NVlabs layer, used only by upsampling ones
        converted[f"{target}.conv.modulation.weight"] = take(f"{source}.affine.weight")
        converted[f"{target}.conv.modulation.bias"] = take(f"{source}.affine.bias")
        converted[f"{target}.noise.weight"] = take(f"{source}.noise_strength").reshape(1)
        converted[f"{target}.activate.bias"] = take(f"{source}.bias")
        noise = take(f"{source}.noise_const")
        return noise.reshape(1, 1, *noise.shape)

    def to_rgb(source: str, target: str, upsample_filter: Tensor | None) -> None:
        converted[f"{target}.bias"] = take(f"{source}.bias").reshape(1, -1, 1, 1)
        if upsample_filter is not None:
            converted[f"{target}.upsample.kernel"] = upsample_filter * 4
        converted[f"{target}.conv.weight"] = take(f"{source}.weight").unsqueeze(0)
        converted[f"{target}.conv.modulation.weight"] = take(f"{source}.affine.weight")
        converted[f"{target}.conv.modulation.bias"] = take(f"{source}.affine.bias")

    noises = []
    converted["input.input"] = take("synthesis.b4.const").unsqueeze(0)
    take("synthesis.b4.resample_filter")  # b4 has no image below it to upsample
    noises.append(synthesis_layer("synthesis.b4.conv1", "conv1", upsample=False))
    to_rgb("synthesis.b4.torgb", "to_rgb1", None)
    for level, resolution in enumerate(resolutions[1:]):
        block = f"synthesis.b{resolution}"
        noises.append(synthesis_layer(f"{block}.conv0", f"convs.{2 * level}", upsample=True))
        noises.append(synthesis_layer(f"{block}.conv1", f"convs.{2 * level + 1}", upsample=False))
        to_rgb(f"{block}.torgb", f"to_rgbs.{level}", take(f"{block}.resample_filter"))
    for index, noise in enumerate(noises):
        converted[f"noises.noise_{index}"] = noise

    if remaining:
        raise StyleGAN2CheckpointError(
            f"this stylegan2-ada-pytorch generator has parts rosinality's has not: {sorted(remaining)} "
            "(class conditioning, the resnet or orig architecture?); it cannot be converted"
        )
    return converted


class StyleGAN2(StyleGAN2Generator, LatentGenerator):
    """The StyleGAN2 generator behind the interface of the GAN trainer and CLIP2GAN (``LatentGenerator``):
    ``forward(z, z_mix, crossover)`` returns images (style mixing from layer ``crossover`` on, random
    noise as in training), ``synthesize(ws)`` takes W+ (the space CLIP2GAN maps into) with the
    stored constant noise. A subclass, not a wrapper, so the state-dict keys stay rosinality's."""

    supports_mixing = True

    def __init__(self, image_size: int, output_nc: int = 3, style_dim: int = 512, n_mlp: int = 8, **options) -> None:
        if output_nc != 3:
            raise ValueError(f"StyleGAN2 generates RGB images: output_nc must be 3, got {output_nc}")
        super().__init__(image_size, style_dim=style_dim, n_mlp=n_mlp, **options)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.num_ws, self.w_dim)

    @property
    def image_size(self) -> int:
        return self.size

    def map_per_layer(self, z: Tensor) -> Tensor:
        """Z+ -> W+: each layer's z through the mapping network (PixelNorm first, so any z works)."""
        return self.z_to_w(z.reshape(-1, z.shape[-1])).view(z.shape[0], self.num_ws, self.w_dim)

    def prior_latents(self, count: int, generator: torch.Generator) -> Tensor:
        """W+ codes of G's prior: w = mapping(z), z ~ N(0, I), the same w for every layer (no mixing)."""
        z = torch.randn(count, self.z_dim, generator=generator).to(self.input.input)
        return self.z_to_w(z).unsqueeze(1).repeat(1, self.num_ws, 1)

    def forward(self, z: Tensor, z_mix: Tensor | None = None, crossover: int | None = None) -> Tensor:  # type: ignore[override]
        styles = [z] if z_mix is None else [z, z_mix]
        image, _ = super().forward(styles, inject_index=crossover if z_mix is not None else None, randomize_noise=True)
        return image

    @classmethod
    def from_rosinality(
        cls,
        checkpoint,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        max_channels: int | None = None,
        source: str | None = None,
    ) -> StyleGAN2:
        """A rosinality checkpoint (path or loaded dict with ``g_ema``) as this class, weights loaded strictly."""
        loaded, _ = load_rosinality_checkpoint(
            checkpoint, size, style_dim, n_mlp, channel_multiplier, max_channels=max_channels, source=source
        )
        generator = cls(size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier, max_channels=max_channels)
        generator.load_state_dict(loaded.state_dict())
        return generator


class StyleGAN2Critic(StyleGAN2Discriminator):
    """The StyleGAN2 discriminator with the arguments the GAN trainer passes (image_size, input_nc)."""

    def __init__(self, image_size: int, input_nc: int = 3, **options) -> None:
        if input_nc != 3:
            raise ValueError(f"the StyleGAN2 discriminator judges RGB images: input_nc must be 3, got {input_nc}")
        super().__init__(image_size, **options)
