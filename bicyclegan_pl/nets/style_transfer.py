"""The networks of Ghiasi et al. (2017), "Exploring the structure of a real-time, arbitrary neural
artistic stylization network", as Magenta's ``arbitrary_image_stylization`` builds them (the
layer-by-layer reading is in ``models/arbitrary_style.py``'s docstring).

- :class:`TransferNetwork`: Magenta's ``nza_model.transform``, a contracting path normalised by
  batch norm, five residual blocks and an expanding path, where every convolution after the
  contracting path is followed by :class:`ConditionalInstanceNorm2d`, whose scale and shift come
  from the style (13 such layers at full width).
- :class:`StylePredictionNetwork`: an image encoder (Inception-v3 up to Mixed_6e, or a small
  convolutional one for CPU-sized runs), the spatial mean of its features, a 1x1 bottleneck to the
  100-d style embedding, then one pair of 1x1 heads (gamma, beta) per normalisation layer.
- :class:`ArbitraryStyleNetwork`: both, the one module the system trains.

Images are in [-1, 1] at every public entry point; the transfer network works on [0, 1] inside,
the range Magenta feeds it and its sigmoid produces.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.weights import named_or_path

#: torchvision's ImageNet Inception-v3 (ported from TF-slim's checkpoint; takes images in [-1, 1])
INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
#: torchvision's Inception3 children in forward order, up to Magenta's ``inception_end_point``
INCEPTION_TO_MIXED_6E = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
)
#: the smallest style image torchvision's Inception-v3 accepts
INCEPTION_MIN_SIZE = 75
STYLE_PREDICTORS = ("inception", "tiny")

#: per normalisation layer: (gamma, beta), each (N, C)
NormParameters = Mapping[str, tuple[Tensor, Tensor]]


class ConditionalInstanceNorm2d(nn.Module):
    """Instance normalisation whose scale gamma and shift beta are inputs, one (C,) pair per sample:
    Magenta's ``ops.conditional_style_norm`` (moments over H, W; variance epsilon 1e-5). It has no
    parameters of its own: the style prediction network makes them."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        expected = (x.shape[0], self.num_features)
        if gamma.shape != expected or beta.shape != expected:
            raise ValueError(f"gamma and beta must be {expected}, got {tuple(gamma.shape)} and {tuple(beta.shape)}")
        return F.instance_norm(x, eps=self.eps) * gamma[:, :, None, None] + beta[:, :, None, None]


class _CenteredBatchNorm2d(nn.BatchNorm2d):
    """TF-slim's ``batch_norm`` defaults (``center=True, scale=False``, epsilon 1e-3): a learned shift
    and no scale. Slim's moving-average decay 0.999 (momentum 0.001) is not kept: after the few
    thousand iterations of a short run its running statistics would still be mostly their
    initial values, so evaluation-mode outputs would not match training; PyTorch's 0.1 is used."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=1e-3, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + self.bias[None, :, None, None]


def _reflect_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Magenta's ``model.conv2d``: mirror padding of kernel_size // 2, then a VALID convolution. No
    bias: slim drops it when a normaliser follows, as every convolution here has one."""
    return nn.Sequential(
        nn.ReflectionPad2d(kernel_size // 2),
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=False),
    )


class TransferNetwork(nn.Module):
    """Content image -> stylised image, styled by the (gamma, beta) of each name in :attr:`norm_channels`.

    ``base_channels`` is Magenta's width multiplier ``alpha`` times 32 (32: the paper's network).
    Upsampling is nearest-neighbour to the size of the matching contracting layer, so any input
    size comes back unchanged (Magenta doubles, which equals this for sizes divisible by 4)."""

    def __init__(self, base_channels: int = 32, residual_blocks: int = 5) -> None:
        super().__init__()
        width = (base_channels, 2 * base_channels, 4 * base_channels)
        self.contract = nn.ModuleList(
            nn.Sequential(_reflect_conv(c_in, c_out, k, s), _CenteredBatchNorm2d(c_out), nn.ReLU())
            for c_in, c_out, k, s in ((3, width[0], 9, 1), (width[0], width[1], 3, 2), (width[1], width[2], 3, 2))
        )
        self.residual = nn.ModuleList(
            nn.ModuleList([_reflect_conv(width[2], width[2], 3), _reflect_conv(width[2], width[2], 3)])
            for _ in range(residual_blocks)
        )
        self.expand = nn.ModuleList(
            [_reflect_conv(width[2], width[1], 3), _reflect_conv(width[1], width[0], 3), _reflect_conv(width[0], 3, 9)]
        )
        #: name -> channels of every conditional normalisation layer, in forward order (Magenta's
        #: ``style_normalization_activations``: residual1/conv1 ... residual5/conv2, expand/conv1..3)
        self.norm_channels: dict[str, int] = OrderedDict(
            [(f"residual{b + 1}_conv{i + 1}", width[2]) for b in range(residual_blocks) for i in range(2)]
            + [("expand_conv1", width[1]), ("expand_conv2", width[0]), ("expand_conv3", 3)]
        )
        self.norms = nn.ModuleDict({name: ConditionalInstanceNorm2d(c) for name, c in self.norm_channels.items()})
        for module in self.modules():  # Magenta: weights ~ N(0, 0.01), biases 0
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.01)

    def _norm(self, name: str, x: Tensor, style: NormParameters) -> Tensor:
        gamma, beta = style[name]
        return self.norms[name](x, gamma, beta)

    def forward(self, content: Tensor, style: NormParameters) -> Tensor:
        h = (content + 1) / 2
        sizes = []
        for layer in self.contract:
            sizes.append(h.shape[-2:])
            h = layer(h)
        for index, (conv1, conv2) in enumerate(self.residual, start=1):
            r = F.relu(self._norm(f"residual{index}_conv1", conv1(h), style))
            h = h + self._norm(f"residual{index}_conv2", conv2(r), style)
        for index, conv in enumerate(self.expand, start=1):
            if index < 3:  # back to the sizes before contract/conv3, conv2; conv3 is Magenta's stride-1 "upsampling"
                h = F.interpolate(h, size=tuple(sizes[-index]), mode="nearest")
            h = self._norm(f"expand_conv{index}", conv(h), style)
            h = F.relu(h) if index < 3 else torch.sigmoid(h)
        return h * 2 - 1


class WeightsFileError(UserError, ValueError):
    """A weights file that exists but does not hold the network's weights."""


class InceptionEncoder(nn.Module):
    """torchvision's Inception-v3 up to Mixed_6e (768 channels): the trunk of Magenta's style
    prediction network (``inception_v3_base(..., final_endpoint='Mixed_6e')``), initialised as
    torchvision does (truncated normal, std 0.1: Magenta's Inception arg scope) until
    :meth:`load_pretrained`. Its children carry torchvision's names, so the official file loads as is.

    It takes images in [-1, 1], the range the TF-ported weights expect (Magenta feeds [0, 1]).
    Its activations are torchvision's ReLU (Magenta's arg scope sets ReLU6 over the ReLU weights it loads)."""

    out_channels = 768

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        full = inception_v3(weights=None, aux_logits=False, init_weights=True)
        for name in INCEPTION_TO_MIXED_6E:
            self.add_module(name, getattr(full, name))

    def forward(self, images: Tensor) -> Tensor:
        if min(images.shape[-2:]) < INCEPTION_MIN_SIZE:
            raise ValueError(
                f"Inception-v3 needs style images of at least {INCEPTION_MIN_SIZE} px, got {tuple(images.shape[-2:])}: "
                f"set model.style_image_size >= {INCEPTION_MIN_SIZE} (or model.style_predictor=tiny)"
            )
        for name in INCEPTION_TO_MIXED_6E:
            images = getattr(self, name)(images)
        return images

    def load_pretrained(self, weights: str | None, weights_dir: str | Path | None, allow_download: bool) -> None:
        """Load ``weights``: ``imagenet`` (torchvision's official file, looked up by
        :func:`~bicyclegan_pl.weights.resolve_weights`), a path to a state dict with
        torchvision's keys, or None (keep the random initialisation: tests, ablations)."""
        if weights is None:
            return
        path = inception_weights_file(weights, weights_dir, allow_download)
        state = torch.load(path, map_location="cpu", weights_only=True)
        own = self.state_dict()
        # files saved before BatchNorm counted its batches have no num_batches_tracked
        missing = [key for key in own if key not in state and not key.endswith("num_batches_tracked")]
        if missing:
            raise WeightsFileError(
                f"{path} is not torchvision's Inception-v3 state dict: it lacks {', '.join(missing[:3])}"
                f"{' and more' if len(missing) > 3 else ''}."
            )
        self.load_state_dict({key: state[key] for key in own if key in state}, strict=False)


def inception_weights_file(weights: str, weights_dir: str | Path | None, allow_download: bool) -> Path:
    """The file ``weights`` names: ``imagenet`` (torchvision's official file, looked up by
    :func:`~bicyclegan_pl.weights.resolve_weights`) or a path."""
    hint = f"model.inception.weights: imagenet for torchvision's {INCEPTION_URL}, a path, or null for random initialisation"
    return named_or_path(weights, {"imagenet": INCEPTION_URL}, weights_dir, allow_download, "Inception-v3 (style prediction)", hint)


class TinyStyleEncoder(nn.Module):
    """Three stride-2 3x3 convolutions with ReLU (``channels``, 2x, 4x): ours, not the paper's. It
    stands in for Inception-v3 where that is too slow (2 CPU cores) or the style images are too
    small for it (under 75 px); it has no pretrained weights, so it learns style features from the
    style loss alone."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        widths = (3, channels, 2 * channels, 4 * channels)
        self.layers = nn.Sequential(
            *(m for c_in, c_out in zip(widths, widths[1:]) for m in (nn.Conv2d(c_in, c_out, 3, 2, 1), nn.ReLU()))
        )
        self.out_channels = widths[-1]

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)


class StylePredictionNetwork(nn.Module):
    """Style image -> style embedding (``bottleneck`` values) -> (gamma, beta) per normalisation layer.

    Magenta's ``style_prediction``: the encoder's features averaged over space, a 1x1 convolution
    to the bottleneck (no activation), then per layer two 1x1 convolutions (no activation) for beta
    and gamma. On a 1x1 map these are linear layers; slim's defaults initialise them (Xavier
    uniform weights, zero biases), so gamma starts near 0, not 1, as in Magenta."""

    def __init__(self, encoder: nn.Module, norm_channels: Mapping[str, int], bottleneck: int = 100) -> None:
        super().__init__()
        if bottleneck < 1:
            raise ValueError(f"the style bottleneck must have at least one value, got {bottleneck}")
        self.encoder = encoder
        self.bottleneck = nn.Linear(encoder.out_channels, bottleneck)
        self.gammas = nn.ModuleDict({name: nn.Linear(bottleneck, c) for name, c in norm_channels.items()})
        self.betas = nn.ModuleDict({name: nn.Linear(bottleneck, c) for name, c in norm_channels.items()})
        for module in (self.bottleneck, *self.gammas.values(), *self.betas.values()):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def embed(self, style: Tensor) -> Tensor:
        """(N, bottleneck): the style embedding, what the paper interpolates between styles."""
        return self.bottleneck(self.encoder(style).mean(dim=(2, 3)))

    def norm_parameters(self, embedding: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        return {name: (self.gammas[name](embedding), self.betas[name](embedding)) for name in self.gammas}

    def forward(self, style: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        return self.norm_parameters(self.embed(style))


class ArbitraryStyleNetwork(nn.Module):
    """The style prediction network P and the style transfer network T: T(content, P(style))."""

    def __init__(self, transfer: TransferNetwork, predictor: StylePredictionNetwork) -> None:
        super().__init__()
        self.transfer = transfer
        self.predictor = predictor

    def embed(self, style: Tensor) -> Tensor:
        return self.predictor.embed(style)

    def stylize(self, content: Tensor, embedding: Tensor) -> Tensor:
        """Content images in the style of an embedding (N, bottleneck), e.g. a mix of two styles'."""
        return self.transfer(content, self.predictor.norm_parameters(embedding))

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        return self.stylize(content, self.embed(style))


def build_arbitrary_style_network(
    style_predictor: str = "inception",
    base_channels: int = 32,
    residual_blocks: int = 5,
    bottleneck: int = 100,
    tiny_channels: int = 32,
) -> ArbitraryStyleNetwork:
    """The paper's networks (``style_predictor: inception``; Inception weights are loaded separately,
    :meth:`InceptionEncoder.load_pretrained`) or the CPU-sized predictor (``tiny``)."""
    if style_predictor not in STYLE_PREDICTORS:
        raise ValueError(f"style_predictor must be one of {', '.join(STYLE_PREDICTORS)}, got {style_predictor!r}")
    transfer = TransferNetwork(base_channels, residual_blocks)
    encoder = InceptionEncoder() if style_predictor == "inception" else TinyStyleEncoder(tiny_channels)
    return ArbitraryStyleNetwork(transfer, StylePredictionNetwork(encoder, transfer.norm_channels, bottleneck))
