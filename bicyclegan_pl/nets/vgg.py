"""VGG feature extractor for the style-transfer losses (Gatys et al. 2015; Ghiasi et al. 2017).

Layers are named as the papers name them: ``conv<b>_<i>``, ``relu<b>_<i>``, ``pool<b>`` for block
b and convolution i. The papers used Caffe, whose ReLUs run in place, so the blob that Gatys et al.
call "conv4_2" holds the rectified output: our ``relu4_2`` (their own PyTorch port reads ``r42``).
Both the raw convolution and its ReLU are returned here, so either reading can be asked for; the
ReLUs are not in place for that reason.

The layers are built in torchvision's order (same module indices as ``vgg19().features``), so
torchvision's ImageNet files load as they are. Only the layers up to the deepest one asked for are
built: the classifier (90 % of VGG's parameters) and the unused top layers are never allocated.

Which network, and how it is fed, sets the scale of every feature, and with it what a loss weight
means. The papers' weights were set on Caffe's VGG fed 0-255 pixels, so three files are known by name:

- ``imagenet``: torchvision's own ImageNet training, fed mean/std-normalised RGB in about [-2, 2];
- ``caffe``: the VGG authors' Caffe model (the network TF-slim's ``vgg_16`` checkpoint, which Magenta
  restores, was converted from), in Justin Johnson's PyTorch conversion: torchvision's keys, fed Caffe's
  input, BGR 0-255 minus the ImageNet mean;
- ``gatys`` (VGG-19 only): Gatys et al.'s "normalized" VGG-19 (weights rescaled so that every filter's
  mean activation over images and positions is one), the ``vgg_conv.pth`` of their PyTorch port
  (keys ``conv1_1.weight`` ...), fed Caffe's input as that port does.

``preprocessing: auto`` feeds each file as it was trained (a path: ``caffe`` for Gatys's key format,
else ``torchvision``; random weights: ``torchvision``); ``torchvision`` or ``caffe`` force one.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VGG16_Weights, VGG19_Weights

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.weights import named_or_path

#: convolutions per block (each 3x3, then a ReLU; a 2x2 pooling ends each block)
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)
#: weights name -> arch -> the published file
WEIGHT_URLS = {
    "imagenet": {"vgg16": VGG16_Weights.IMAGENET1K_V1.url, "vgg19": VGG19_Weights.IMAGENET1K_V1.url},
    "caffe": {
        "vgg16": "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth",
        "vgg19": "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth",
    },
    "gatys": {"vgg19": "https://bethgelab.org/media/uploads/pytorch_models/vgg_conv.pth"},
}
#: weights name -> what the file is, for messages
WEIGHT_DESCRIPTIONS = {
    "imagenet": "torchvision, ImageNet",
    "caffe": "Caffe's ImageNet model, Johnson's PyTorch conversion",
    "gatys": "Gatys et al.'s normalised VGG-19",
}
#: weights name -> the input the file was trained on
NATIVE_PREPROCESSING = {"imagenet": "torchvision", "caffe": "caffe", "gatys": "caffe"}
PREPROCESSINGS = ("auto", "torchvision", "caffe")
POOLINGS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
#: the normalisation torchvision's ImageNet weights expect, for RGB images in [0, 1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Caffe's VGG input: BGR pixels in 0-255 minus these means (B, G, R), as Gatys et al.'s port and slim's vgg_16 feed it
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class VGGSettingError(UserError, ValueError):
    """An architecture, layer name or pooling the VGG feature extractor does not have."""


def layer_names(arch: str) -> list[str]:
    """The names of ``arch``'s feature layers, in order (index i = torchvision's ``features[i]``)."""
    if arch not in BLOCKS:
        raise VGGSettingError(f"VGG arch={arch!r}: choose from {sorted(BLOCKS)}.")
    names: list[str] = []
    for block, convolutions in enumerate(BLOCKS[arch], start=1):
        for index in range(1, convolutions + 1):
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        names.append(f"pool{block}")
    return names


class VGGFeatures(nn.Module):
    """Frozen VGG-16/19 ``features``: images in [-1, 1] (N, 3, H, W) -> {layer name: activation}.

    ``weights``: ``"imagenet"``, ``"caffe"`` or ``"gatys"`` (the module doc) load that published file
    through :func:`~bicyclegan_pl.weights.resolve_weights` (``weights_dir``, the torch hub cache,
    a download only if ``allow_download``); a path loads that state dict (torchvision's format,
    ``features.<i>.weight``, the features alone, ``<i>.weight``, or Gatys et al.'s ``conv1_1.weight``);
    ``None`` keeps a random initialisation (torchvision's for VGG), for tests and for runs that only
    need the code path. ``preprocessing``: how images are fed (the module doc).
    ``pooling="avg"`` replaces every max pooling by average pooling (Gatys et al.'s choice for
    synthesis); the weights are the same either way.
    """

    def __init__(
        self,
        arch: str = "vgg19",
        layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        pooling: str = "max",
        weights: str | None = "imagenet",
        weights_dir: str | Path | None = None,
        allow_download: bool = False,
        preprocessing: str = "auto",
    ) -> None:
        super().__init__()
        names = layer_names(arch)
        unknown = [layer for layer in layers if layer not in names]
        if unknown or not layers:
            problem = f"{arch} has no {unknown}" if unknown else "give at least one"
            raise VGGSettingError(f"VGG layers {list(layers)}: {problem}; the layers of {arch} are {', '.join(names)}.")
        if pooling not in POOLINGS:
            raise VGGSettingError(f"VGG pooling={pooling!r}: choose from {sorted(POOLINGS)}.")
        if preprocessing not in PREPROCESSINGS:
            raise VGGSettingError(f"VGG preprocessing={preprocessing!r}: choose from {', '.join(PREPROCESSINGS)}.")
        self.arch = arch
        self.layers = tuple(layers)
        depth = max(names.index(layer) for layer in layers) + 1
        self.names = names[:depth]
        self.features = nn.Sequential(*build_layers(arch, pooling)[:depth])
        native = "torchvision"
        if weights is None:
            initialise(self.features)
        else:
            native = load_weights(self.features, arch, weights_file(arch, weights, weights_dir, allow_download))
            native = NATIVE_PREPROCESSING.get(weights, native)
        #: "torchvision" (mean/std-normalised RGB) or "caffe" (BGR 0-255 minus the mean)
        self.preprocessing = native if preprocessing == "auto" else preprocessing
        self.features.requires_grad_(False)
        if self.preprocessing == "caffe":  # (unit BGR - mean / 255) * 255 = BGR 0-255 minus the mean
            mean, std = [m / 255.0 for m in CAFFE_MEAN_BGR], [1 / 255.0] * 3
        else:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always in eval mode: a frozen feature extractor inside a training system stays one."""
        return super().train(False)

    def network_input(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] as the network's first layer takes them (``preprocessing``)."""
        unit = (images + 1) / 2
        if self.preprocessing == "caffe":
            unit = unit.flip(1)  # RGB -> BGR
        return (unit - self.mean) / self.std

    @torch.no_grad()
    def normalize_activations(self, images: Tensor, batch_size: int = 8) -> None:
        """Gatys et al.'s normalisation, in place: "We normalized the network by scaling the weights such
        that the mean activation of each convolutional filter over images and positions is equal to one.
        Such re-scaling can be done for the VGG network without changing its output, because it contains
        only rectifying linear activation functions and no normalization or pooling over feature maps."

        ``images`` (N, 3, H, W) in [-1, 1] are the images the means are taken over. One pass measures every
        filter's mean rectified activation m of the network as it is; then each convolution's weights
        are multiplied by the previous layer's m (undoing that layer's rescaling) and divided, with its
        bias, by its own m, so every ReLU output becomes the old one divided by its m. Filters that never
        fire keep their scale."""
        convolutions = [index for index, layer in enumerate(self.features) if isinstance(layer, nn.Conv2d)]
        sums = {index: torch.zeros(self.features[index].out_channels, device=images.device, dtype=torch.float64) for index in convolutions}
        counts = dict.fromkeys(convolutions, 0)
        for start in range(0, images.shape[0], batch_size):
            hidden = self.network_input(images[start : start + batch_size])
            for index, layer in enumerate(self.features):
                hidden = layer(hidden)
                if index in sums:  # the rectified output, also where the ReLU itself was not built
                    sums[index] += F.relu(hidden).sum(dim=(0, 2, 3), dtype=torch.float64)
                    counts[index] += hidden.shape[0] * hidden.shape[2] * hidden.shape[3]
        previous = torch.ones(3, device=images.device)
        for index in convolutions:
            mean = (sums[index] / counts[index]).to(previous.dtype)
            mean = torch.where(mean > 0, mean, torch.ones_like(mean))
            convolution = self.features[index]
            convolution.weight.mul_(previous.view(1, -1, 1, 1) / mean.view(-1, 1, 1, 1))
            convolution.bias.div_(mean)
            previous = mean

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        wanted = set(self.layers)
        hidden = self.network_input(images)
        found: dict[str, Tensor] = {}
        for name, layer in zip(self.names, self.features):
            hidden = layer(hidden)
            if name in wanted:
                found[name] = hidden
        return found


def build_layers(arch: str, pooling: str) -> list[nn.Module]:
    """``arch``'s feature layers in torchvision's order, with not-in-place ReLUs."""
    modules: list[nn.Module] = []
    channels = 3
    for convolutions, width in zip(BLOCKS[arch], WIDTHS):
        for _ in range(convolutions):
            modules += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU()]
            channels = width
        modules.append(POOLINGS[pooling](kernel_size=2, stride=2))
    return modules


def initialise(features: nn.Module) -> None:
    """torchvision's VGG initialisation (He, fan-out): random features keep their scale through
    16 layers, so losses on a random network behave like losses on a trained one."""
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)


def weights_file(arch: str, weights: str, weights_dir: str | Path | None, allow_download: bool) -> Path:
    """The state dict file ``weights`` names: a published file (:data:`WEIGHT_URLS`), or a path."""
    if weights in WEIGHT_URLS and arch not in WEIGHT_URLS[weights]:
        raise VGGSettingError(f"VGG weights={weights!r} exist for {', '.join(WEIGHT_URLS[weights])} only, not arch={arch!r}.")
    what = f"{arch.upper()} ({WEIGHT_DESCRIPTIONS[weights]})" if weights in WEIGHT_URLS else arch.upper()
    named = {name: urls[arch] for name, urls in WEIGHT_URLS.items() if arch in urls}
    hint = f"weights: {', '.join(repr(name) for name in WEIGHT_URLS)}, or a path to a state dict"
    return named_or_path(weights, named, weights_dir, allow_download, what, hint)


def load_weights(features: nn.Sequential, arch: str, path: Path) -> str:
    """Load the parameters of ``features`` (the first layers of ``arch``) from ``path``; return the
    preprocessing the file's format implies (Gatys et al.'s layer names: ``caffe``, else ``torchvision``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    names = layer_names(arch)
    if any(key.startswith("conv1_1.") for key in state):  # Gatys et al.'s port: conv<b>_<i>.weight / .bias
        layers = {f"{names.index(key.split('.')[0])}.{key.split('.')[1]}": value for key, value in state.items() if key.split(".")[0] in names}
        native = "caffe"
    else:
        layers = {key.removeprefix("features."): value for key, value in state.items() if not key.startswith("classifier.")}
        native = "torchvision"
    expected = f"(torchvision's keys features.<index>.weight/bias, as {WEIGHT_URLS['imagenet'][arch].rsplit('/', 1)[-1]}, or Gatys et al.'s conv1_1.weight ...)"
    missing = [key for key in features.state_dict() if key not in layers]
    if missing:  # named as the layers are: "conv1_1.bias", not "0.bias"
        readable = [f"{names[int(key.split('.')[0])]}.{key.split('.')[1]}" for key in missing]
        raise VGGSettingError(f"{path} is not a {arch} state dict {expected}: it lacks {', '.join(readable[:3])}{' and more' if len(readable) > 3 else ''}.")
    try:
        features.load_state_dict({key: value for key, value in layers.items() if key.split(".", 1)[0].isdigit() and int(key.split(".", 1)[0]) < len(features)})
    except (ValueError, RuntimeError) as error:
        detail = " ".join(line.strip() for line in str(error).splitlines()[1:3]) or str(error)
        raise VGGSettingError(f"{path} is not a {arch} state dict {expected}: {detail}") from error
    return native
