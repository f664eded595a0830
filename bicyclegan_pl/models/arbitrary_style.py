"""Real-time arbitrary style transfer (Ghiasi, Lee, Kudlur, Dumoulin, Shlens 2017, "Exploring the
structure of a real-time, arbitrary neural artistic stylization network"), seed 004's second
baseline, as its authors' code builds and trains it, on the shared schedule engine.

What the authors' code does (magenta/magenta, ``magenta/models/``; read for this module):

- ``arbitrary_image_stylization/arbitrary_image_stylization_train.py`` flags: ``learning_rate``
  1e-5 (Adam), ``batch_size`` 8, ``image_size`` 256, ``content_weights`` '{"vgg_16/conv3": 1}',
  ``style_weights`` '{"vgg_16/conv1": 0.5e-3, "vgg_16/conv2": 0.5e-3, "vgg_16/conv3": 0.5e-3,
  "vgg_16/conv4": 0.5e-3}', ``total_variation_weight`` 1e4, ``clip_gradient_norm`` 0 (off),
  ``augment_style_images`` True, ``random_style_image_size`` True, ``center_crop`` False,
  ``train_steps`` 8,000,000; ``build_model(inception_end_point='Mixed_6e',
  style_prediction_bottleneck=100)``. Content images: ImageNet (``image_utils.imagenet_inputs``:
  smaller side to 258, centre crop 256); style images: a TFRecord of paintings and textures. The
  Inception-v3 and VGG-16 checkpoints are restored; everything except VGG-16 trains, Inception
  included (its batch norm in training mode).
- ``arbitrary_image_stylization_build_model.py`` ``style_prediction``: ``inception_v3_base`` up to
  ``Mixed_6e`` (768 channels; Magenta's arg scope: ReLU6, batch norm decay 0.9997 and epsilon
  1e-3, truncated-normal std 0.1, weight decay 4e-5 whose losses the train script never adds), the
  mean over height and width, a 1x1 convolution to the 100-value bottleneck (no activation, no
  norm), then per conditional layer two 1x1 convolutions, beta and gamma (no activation).
- ``arbitrary_image_stylization/nza_model.py`` ``transform`` (via ``image_stylization/model.py``'s
  mirror-padded ``conv2d``, ``residual_block``, ``upsampling``): contract conv1 9x9 stride 1, 32;
  conv2 3x3 stride 2, 64; conv3 3x3 stride 2, 128, each batch norm (slim: shift, no scale) + ReLU;
  residual1..5, each two 3x3 convolutions of 128 with conditional norm, ReLU after the first only,
  plus the skip; expand conv1 nearest x2 + 3x3, 64; conv2 x2 + 3x3, 32; conv3 9x9, 3, each with
  conditional norm then ReLU, ReLU, sigmoid. Weights N(0, 0.01). ``style_normalization_activations``:
  13 conditional layers, 10 x 128, then 64, 32, 3. The contracting path is NOT conditional.
- ``image_stylization/ops.py`` ``conditional_style_norm``: moments over H and W, epsilon 1e-5,
  gamma and beta taken from the style prediction network.
- ``arbitrary_image_stylization_losses.py``: VGG-16 on content, style and stylised images; content
  = sum_l w_l mean((phi_l(c) - phi_l(y))^2); style = sum_l w_l mean((G_l(y) - G_l(s))^2) with
  ``image_stylization/learning.py``'s G = F^T F / (H W); total = content + style + tv.
  ``learning.total_variation_loss``: (l2_loss(dy) / ((H-1) W C) + l2_loss(dx) / (H (W-1) C)) / N x
  weight, l2_loss = sum / 2, i.e. 0.5 (mean dy^2 + mean dx^2) on images in [0, 1].
- ``image_stylization/vgg.py`` ``vgg_16``: inputs [0, 1] x 255 minus the Caffe means (123.68,
  116.779, 103.939), AVERAGE pooling by default; the end point ``vgg_16/convN`` is block N's last
  convolution after its ReLU: conv1 = relu1_2, conv2 = relu2_2, conv3 = relu3_3, conv4 = relu4_3.
- ``image_stylization/image_utils.py`` ``arbitrary_style_image_inputs``: see ``style_images``.
- ``arbitrary_image_stylization_with_weights.py`` (``interpolation_weights``): the content image
  goes through the style path (resized to ``style_image_size`` 256) for the "identity" bottleneck,
  and the network runs on identity * (1 - w) + style * w: w = 1 full style, 0 the content's own.

How this module reads it, and where it departs (README, "Arbitrary style transfer"):
- ``model.loss_network``: Caffe's ImageNet VGG-16 (``weights: caffe``, ``arch: vgg16``, ``pooling: avg``,
  layers above), the model slim's ``vgg_16`` checkpoint was converted from, in Johnson's PyTorch
  conversion, fed as Magenta feeds it (0-255 minus the mean; BGR, the channel order that conversion
  kept, where slim's flipped the first layer to RGB: the same function). Magenta's loss weights were
  set on this feature scale. ``weights: imagenet`` (torchvision's VGG-16, trained on mean/std-normalised
  inputs) has other feature scales, so the same weights would balance content, style and tv
  differently; ``arch: vgg19`` follows seed 004 ("the same VGG-Network").
- the Inception trunk is torchvision's (ReLU where Magenta's arg scope puts ReLU6), fed [-1, 1],
  the range its TF-ported weights were trained on (Magenta feeds [0, 1]).
- batch-norm momentum 0.1 in the transfer network (slim: 0.001, see ``nets.style_transfer``);
  upsampling to the exact contracting sizes (any image size works).
- ``style_predictor: tiny`` (ours) replaces Inception in CPU-sized runs (``nets.style_transfer``).
- content and style images come from the framework's unpaired data: A = content, B = style.

Optimiser (fixed): ``T`` (transfer and prediction networks together). Loss terms: ``content``,
``style``, ``tv``. The loss network is frozen, outside the module's children (never in a checkpoint)
and built on first use, as are the pretrained Inception weights at the start of a fit: loading a
checkpoint for inference (``stylize``, ``compare``) needs neither file.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.losses.style import gram_matrix
from bicyclegan_pl.models.base import ScheduledTranslationModule
from bicyclegan_pl.models.style_images import StyleAugmentation, resize_smaller_side
from bicyclegan_pl.nets.style_transfer import INCEPTION_MIN_SIZE, InceptionEncoder, build_arbitrary_style_network, inception_weights_file
from bicyclegan_pl.nets.vgg import VGGFeatures, weights_file
from bicyclegan_pl.runtime.schedule import ForwardResults, ResultSpec

UNTRAINED_LOSS_NETWORK = (
    "\n" + "!" * 78 + "\n"
    "model.loss_network.weights=null: the VGG loss network is RANDOMLY INITIALISED. Content and style\n"
    "losses on random features do not teach style transfer; this setting is for tests only. Train with\n"
    "model.loss_network.weights=caffe (Caffe's VGG-16, as Magenta; vgg16-00b39a1b.pth in paths.weights_dir),\n"
    "imagenet (torchvision's vgg16-397923af.pth) or a path.\n"
    + "!" * 78
)


class ArbitraryStyleSettingError(UserError, ValueError):
    """A setting of the arbitrary style transfer system that cannot work (the message names it)."""


def _rgb(images: Tensor) -> Tensor:
    """Grayscale content (colorization data, input_nc 1) as three equal channels: VGG and the
    transfer network take RGB."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def total_variation(images: Tensor) -> Tensor:
    """Magenta's ``learning.total_variation_loss`` before its weight: 0.5 (mean dy^2 + mean dx^2)
    on the image in [0, 1] (``images`` are in [-1, 1])."""
    unit = (images + 1) / 2
    dy = unit[:, :, 1:, :] - unit[:, :, :-1, :]
    dx = unit[:, :, :, 1:] - unit[:, :, :, :-1]
    return 0.5 * (dy.pow(2).mean() + dx.pow(2).mean())


class ArbitraryStyleTransfer(ScheduledTranslationModule):
    """A style prediction network P and a transfer network T trained on (content = A, style = B) pairs."""

    #: one output per (content, style) pair
    deterministic = True
    progress_bar_terms = ("content", "style", "tv")

    def __init__(
        self,
        loss_network: Mapping[str, Any],
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        style_predictor: str = "inception",
        inception: Mapping[str, Any] | None = None,
        tiny_channels: int = 32,
        style_bottleneck: int = 100,
        transfer_channels: int = 32,
        residual_blocks: int = 5,
        style_image_size: int | None = 256,
        style_augmentation: Mapping[str, Any] | None = None,
        **schedule_options: Any,
    ):
        super().__init__(**schedule_options)
        if not content_layers or not style_layers:
            raise ArbitraryStyleSettingError("model.content_layers and model.style_layers each need at least one VGG layer")
        try:
            self.network = build_arbitrary_style_network(
                style_predictor, transfer_channels, residual_blocks, style_bottleneck, tiny_channels
            )
            self.style_augmentation = StyleAugmentation(**style_augmentation) if style_augmentation else None
        except ValueError as error:
            raise ArbitraryStyleSettingError(f"model: {error}") from error
        if style_predictor == "inception":
            sizes = {"model.style_image_size": style_image_size}
            if self.style_augmentation is not None and self.style_augmentation.random_size is not None:
                sizes["model.style_augmentation.random_size[0]"] = self.style_augmentation.random_size[0]
            small = {key: size for key, size in sizes.items() if size is not None and size < INCEPTION_MIN_SIZE}
            if small:
                raise ArbitraryStyleSettingError(
                    f"Inception-v3 needs style images of at least {INCEPTION_MIN_SIZE} px: "
                    + ", ".join(f"{key}={size}" for key, size in small.items())
                    + f"; raise them to {INCEPTION_MIN_SIZE} or more, or set model.style_predictor=tiny"
                )
        self.content_layers = {str(k): float(v) for k, v in content_layers.items()}
        self.style_layers = {str(k): float(v) for k, v in style_layers.items()}
        self.loss_network_config = dict(loss_network)
        self.inception_config = dict(inception or {})
        self.style_image_size = style_image_size
        self._loss_network: VGGFeatures | None = None

    def optimizer_groups(self) -> dict[str, nn.Module]:
        return {"T": self.network}

    # ---- frozen and pretrained networks --------------------------------------------------------
    @property
    def loss_network(self) -> VGGFeatures:
        """The frozen VGG of the losses, built on first use (so inference never needs its file)."""
        if self._loss_network is None:
            config = self.loss_network_config
            if config.get("weights") is None:
                warnings.warn(UNTRAINED_LOSS_NETWORK, stacklevel=2)
            layers = list(dict.fromkeys([*self.content_layers, *self.style_layers]))
            # random weights (null) from model.seed, not from the global stream: a resumed run gets the same ones
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                network = VGGFeatures(
                    arch=config.get("arch", "vgg16"),
                    layers=layers,
                    pooling=config.get("pooling", "avg"),
                    weights=config.get("weights"),
                    weights_dir=config.get("weights_dir"),
                    allow_download=bool(config.get("allow_download", False)),
                    preprocessing=str(config.get("preprocessing", "auto")),
                )
            object.__setattr__(self, "_loss_network", network.to(self.device))  # not a child: see the module doc
        return self._loss_network

    def check_pretrained_files(self, resuming: bool) -> None:
        """The loss network's file (every fit) and, for a new fit, Inception-v3's: found (or
        downloaded, where allowed) now, before ``train`` opens its loggers, though both load in ``setup``."""
        config = self.loss_network_config
        if config.get("weights") is not None:
            weights_file(config.get("arch", "vgg16"), str(config["weights"]), config.get("weights_dir"), bool(config.get("allow_download", False)))
        inception = self.inception_config
        if not resuming and isinstance(self.network.predictor.encoder, InceptionEncoder) and inception.get("weights") is not None:
            inception_weights_file(str(inception["weights"]), inception.get("weights_dir"), bool(inception.get("allow_download", False)))

    def _apply(self, fn, recurse: bool = True):
        # .to(device) / .to(dtype) also move the loss network, which is not a registered child
        super()._apply(fn, recurse)
        if self._loss_network is not None:
            self._loss_network._apply(fn, recurse)
        return self

    def setup(self, stage: str) -> None:
        super().setup(stage)
        # a new fit starts the style prediction network from ImageNet Inception-v3 (as Magenta restores
        # its checkpoint); a resumed fit then loads its own weights over these
        if stage == "fit" and self.iteration == 0 and isinstance(self.network.predictor.encoder, InceptionEncoder):
            config = self.inception_config
            self.network.predictor.encoder.load_pretrained(
                config.get("weights"), config.get("weights_dir"), bool(config.get("allow_download", False))
            )
        if stage in ("fit", "validate"):
            _ = self.loss_network  # now: a missing weights file stops the run before its first step

    # ---- style images -------------------------------------------------------------------------
    def style_input(self, images: Tensor) -> Tensor:
        """Style images as the prediction network and the style loss see them outside training:
        the smaller side resized to ``style_image_size`` (None: as given)."""
        images = _rgb(images)
        return images if self.style_image_size is None else resize_smaller_side(images, self.style_image_size)

    def prepare_iteration(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Any]:
        content, style = _rgb(batch["A"]), _rgb(batch["B"])
        if self.style_augmentation is None:
            style = self.style_input(style)
        else:
            draws = self.style_augmentation.draw(style.shape[0], generator)
            style = self.style_augmentation.apply(style, draws)
            if "size" not in draws:
                style = self.style_input(style)
        return {"content": self.to_memory_format(content), "style": self.to_memory_format(style)}

    # ---- forward results and losses --------------------------------------------------------------
    def forward_results(self) -> dict[str, ResultSpec]:
        def stylized(r: ForwardResults) -> Tensor:
            return self.network(r.inputs["content"], r.inputs["style"])

        def content_targets(r: ForwardResults) -> dict[str, Tensor]:
            with torch.no_grad():
                return self.loss_network(r.inputs["content"])

        def style_targets(r: ForwardResults) -> dict[str, Tensor]:
            with torch.no_grad():
                return self.style_grams(self.loss_network(r.inputs["style"]))

        return {
            "stylized": ResultSpec(stylized, nets=("T",)),
            "stylized_features": ResultSpec(lambda r: self.loss_network(r["stylized"])),
            "content_targets": ResultSpec(content_targets),
            "style_targets": ResultSpec(style_targets),
        }

    def style_grams(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Magenta's Gram matrices, F^T F / (H W), of the style layers."""
        return {layer: gram_matrix(features[layer], normalize="positions") for layer in self.style_layers}

    def content_loss(self, features: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        return sum(w * (features[layer] - targets[layer]).pow(2).mean() for layer, w in self.content_layers.items())

    def style_loss(self, features: Mapping[str, Tensor], target_grams: Mapping[str, Tensor]) -> Tensor:
        grams = self.style_grams(features)
        return sum(w * (grams[layer] - target_grams[layer]).pow(2).mean() for layer, w in self.style_layers.items())

    def loss_terms(self) -> dict[str, Callable[[ForwardResults], Tensor]]:
        return {
            "content": lambda r: self.content_loss(r["stylized_features"], r["content_targets"]),
            "style": lambda r: self.style_loss(r["stylized_features"], r["style_targets"]),
            "tv": lambda r: total_variation(r["stylized"]),
        }

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def stylize(self, content: Tensor, style: Tensor, interpolation: float = 1.0) -> Tensor:
        """``content`` (N, C, H, W) in the style of ``style`` ((N or 1), C, H', W'), images in [-1, 1],
        one forward pass. ``interpolation`` mixes the style embeddings as the paper does: 1 the style
        image's, 0 the content image's own (through the same style path), values between a blend."""
        content = _rgb(content.to(self.device))
        embedding = self.network.embed(self.style_input(style.to(self.device)))
        if interpolation != 1.0:
            own = self.network.embed(self.style_input(content))
            embedding = own * (1.0 - interpolation) + embedding * interpolation
        return self.network.stylize(content, embedding.expand(content.shape[0], -1))

    @torch.no_grad()
    def sample_outputs(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator) -> Tensor:
        """(S, N, C, H, W): each content image A in the style of its B, repeated (deterministic)."""
        stylized = self.stylize(batch["A"], batch["B"])
        return stylized.unsqueeze(0).expand(num_samples, *stylized.shape)

    def sample_columns(
        self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator
    ) -> list[tuple[str, Tensor]]:
        content, style = batch["A"].to(self.device), batch["B"].to(self.device)
        return [("content", _rgb(content)), ("style", style), ("stylised", self.stylize(content, style))]

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        """The training losses on held-out pairs without augmentation; ``val/loss`` is their weighted sum."""
        content, style = _rgb(batch["A"]), self.style_input(batch["B"])
        with torch.no_grad():
            stylized = self.network(content, style)
            features = self.loss_network(stylized)
            values = {
                "content": self.content_loss(features, self.loss_network(content)),
                "style": self.style_loss(features, self.style_grams(self.loss_network(style))),
                "tv": total_variation(stylized),
            }
        values["loss"] = sum(self.loss_weights.get(name, 0.0) * value for name, value in values.items())
        self.log_dict({f"val/{name}": value for name, value in values.items()}, batch_size=content.shape[0], sync_dist=True)
