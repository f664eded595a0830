"""Unconditional GANs (StyleGAN2, DCGAN) on the shared schedule engine: the frozen generator that
CLIP2GAN (seed 003) maps into, trained here where no pretrained one can be downloaded.

The recipe is rosinality/stylegan2-pytorch's ``train.py``: the non-saturating logistic loss
(``gan_mode: vanilla``: softplus(-D(G(z))) for G, softplus(D(G(z))) + softplus(-D(x)) for D),
lazy R1 on real images (the ``d_r1`` term in a phase of its own with ``every: 16``, weight
gamma / 2 * 16), a D step then a G step, each on its own z, style mixing with probability
``mixing`` (StyleGAN2 only), and an exponential moving average of G's weights (``generator_ema``)
that every sample, metric and checkpoint user reads. Path-length regularisation of G is not
implemented (rosinality's ``path_regularize``, every 4 iterations): it smooths the W space for
projection, which nothing here needs.

Optimisers (fixed order): G, D. Loss terms: gan, d, d_r1.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bicyclegan_pl.losses import discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty
from bicyclegan_pl.models.base import ScheduledTranslationModule
from bicyclegan_pl.runtime.schedule import ForwardResults, ResultSpec, ScheduleError

NetFactory = Callable[..., nn.Module]


class UnconditionalGAN(ScheduledTranslationModule):
    """G(z) -> image, judged by D against the real images ("B") of the data module."""

    progress_bar_terms = ("gan", "d")

    def __init__(
        self,
        generator: NetFactory,
        discriminator: NetFactory,
        image_size: int = 32,
        output_nc: int = 3,
        gan_mode: str = "vanilla",
        ema_decay: float = 0.999,
        mixing: float = 0.0,
        **schedule_options: Any,
    ):
        super().__init__(**schedule_options)
        if not 0.0 <= ema_decay < 1.0:
            raise ScheduleError(f"model.ema_decay must be in [0, 1), got {ema_decay}")
        if gan_mode == "wgangp":
            raise ScheduleError(
                "model.gan_mode=wgangp needs an interpolation penalty this trainer does not have; use vanilla "
                "(StyleGAN2's non-saturating loss, with R1: model.loss_weights.d_r1), lsgan or hinge"
            )
        self.check_gradient_penalties(gan_mode, {"d": "d_r1"})  # R1 with model.compile stops here
        self.gan_mode = gan_mode
        self.ema_decay = float(ema_decay)
        self.generator = generator(image_size=image_size, output_nc=output_nc)
        self.discriminator = discriminator(image_size=image_size, input_nc=output_nc)
        if mixing and not self.generator.supports_mixing:
            raise ScheduleError(f"model.mixing={mixing}: {type(self.generator).__name__} has no style mixing; set model.mixing=0")
        self.mixing = float(mixing)
        #: the average of G's weights (and a copy of its buffers): what samples and CLIP2GAN use
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False).eval()

    def optimizer_groups(self) -> dict[str, nn.Module]:
        return {"G": self.generator, "D": self.discriminator}

    @property
    def z_dim(self) -> int:
        return int(self.generator.z_dim)

    def batch_size_of(self, batch: Mapping[str, Any]) -> int:
        return int(batch["B"].shape[0])

    # ---- one iteration ------------------------------------------------------------------------
    def _draw_codes(self, size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """z, and for style mixing a second z and the layer where it takes over (rosinality's
        ``mixing_noise``: with probability ``mixing``; otherwise the crossover is the last layer + 1)."""
        codes = {"z": torch.randn(size, self.z_dim, generator=generator)}
        if self.mixing:
            mixed = torch.rand((), generator=generator).item() < self.mixing
            second = torch.randn(size, self.z_dim, generator=generator)
            crossover = int(torch.randint(1, self.generator.num_ws, (), generator=generator)) if mixed else self.generator.num_ws
            codes.update(z_mix=second, crossover=torch.tensor(crossover))
        return codes

    def prepare_iteration(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Any]:
        size = self.batch_size_of(batch)
        inputs: dict[str, Any] = {"real": self.to_memory_format(batch["B"])}
        for phase in ("d", "g"):  # D and G each see their own codes, as rosinality draws noise per step
            for name, value in self._draw_codes(size, generator).items():
                inputs[f"{name}_{phase}"] = value.to(self.device)
        return inputs

    def _generate(self, net: nn.Module, inputs: Mapping[str, Any], phase: str) -> Tensor:
        if not self.mixing:
            return net(inputs[f"z_{phase}"])
        return net(inputs[f"z_{phase}"], inputs[f"z_mix_{phase}"], int(inputs[f"crossover_{phase}"]))

    def forward_results(self) -> dict[str, ResultSpec]:
        return {
            "fake_for_d": ResultSpec(lambda r: self._generate(self.generator, r.inputs, "d"), nets=("G",)),
            "fake_for_g": ResultSpec(lambda r: self._generate(self.generator, r.inputs, "g"), nets=("G",)),
        }

    def loss_terms(self) -> dict[str, Callable[[ForwardResults], Tensor]]:
        mode = self.gan_mode

        def gan(r: ForwardResults) -> Tensor:
            return generator_adversarial_loss(self.discriminator(r["fake_for_g"]), mode)

        def d(r: ForwardResults) -> Tensor:
            fake = self.discriminator(r.detached("fake_for_d"))
            return discriminator_adversarial_loss(fake, self.discriminator(r.inputs["real"]), mode)

        def d_r1(r: ForwardResults) -> Tensor:
            return r1_penalty(self.discriminator, r.inputs["real"])

        return {"gan": gan, "d": d, "d_r1": d_r1}

    def on_iteration_end(self, stepped: set[str]) -> None:
        if "G" in stepped:
            self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * G for parameters; buffers (BatchNorm statistics,
        StyleGAN2's fixed noise) are copied."""
        for average, current in zip(self.generator_ema.parameters(), self.generator.parameters()):
            average.lerp_(current, 1.0 - self.ema_decay)
        for average, current in zip(self.generator_ema.buffers(), self.generator.buffers()):
            average.copy_(current)

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_images: int, generator: torch.Generator) -> Tensor:
        """(N, C, H, W) images of the EMA generator for z drawn from ``generator``."""
        z = torch.randn(num_images, self.z_dim, generator=generator).to(self.device)
        return self.generator_ema(z)

    @torch.no_grad()
    def sample_outputs(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator) -> Tensor:
        size = self.batch_size_of(batch)
        return self.sample(num_samples * size, generator).unflatten(0, (num_samples, size))

    def sample_columns(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator):
        outputs = self.sample_outputs(batch, num_samples, generator)
        return [("real", batch["B"].to(self.device)), *((f"sample {index + 1}", output) for index, output in enumerate(outputs))]

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        """D's mean logit on real images and on EMA samples: how far apart D still tells them."""
        size = self.batch_size_of(batch)
        generator = torch.Generator().manual_seed(batch_idx)
        with torch.no_grad():
            real = self.discriminator(batch["B"]).mean()
            fake = self.discriminator(self.sample(size, generator)).mean()
        self.log_dict({"val/d_real": real, "val/d_fake": fake}, batch_size=size, sync_dist=True)

