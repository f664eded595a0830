"""BicycleGAN (Zhu et al. 2017): cVAE-GAN + cLR-GAN with one generator, an encoder and two discriminators.

Forward results and loss terms follow junyanz/BicycleGAN ``models/bicycle_gan_model.py``
(``forward``, ``backward_EG``, ``backward_D``); the order in which they are backpropagated and which
optimisers step when is the schedule (``model.schedule``), so the seed reports' order and
loss-grouping ablations are configs, not code.

Optimisers (fixed order, so any schedule resumes from any checkpoint): G, E, D_vae, D_clr; with
``shared_discriminator`` (the reference's ``use_same_D``, seed 000's ``train2.py``) one D judges both
branches and the optimisers are G, E, D.
Loss terms: vae_l1, kl, vae_gan, clr_gan, clr_latent, mode_seeking, d_vae, d_clr, and the gradient
penalties d_vae_gp, d_clr_gp (``model.gradient_penalty``: wgangp on interpolates of the real and fake
images of d_vae / d_clr, or r1 on their real images; d_clr_gp penalises the cLR branch's
discriminator, the shared one with ``shared_discriminator``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bicyclegan_pl.losses import (
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    kl_divergence,
    latent_l1,
    mode_seeking_loss,
    reparameterize,
)
from bicyclegan_pl.models.base import ScheduledTranslationModule
from bicyclegan_pl.nets.init import init_weights
from bicyclegan_pl.runtime.schedule import ForwardResults, ResultSpec

NetFactory = Callable[..., nn.Module]


class BicycleGAN(ScheduledTranslationModule):
    progress_bar_terms = ("vae_l1", "clr_latent", "d_vae", "d_clr")
    has_encoder = True

    def __init__(
        self,
        generator: NetFactory,
        encoder: NetFactory,
        discriminator: NetFactory,
        input_nc: int = 1,
        output_nc: int = 3,
        nz: int = 8,
        batch_split: bool = True,
        shared_discriminator: bool = False,
        gan_mode: str = "lsgan",
        init: Mapping[str, Any] | None = None,
        mode_seeking_eps: float = 1e-5,
        **schedule_options: Any,
    ):
        super().__init__(**schedule_options)
        self.nz = nz
        self.batch_split = batch_split
        self.gan_mode = gan_mode
        self.mode_seeking_eps = mode_seeking_eps
        self.generator = generator(input_nc=input_nc, output_nc=output_nc, nz=nz)
        self.encoder = encoder(input_nc=output_nc, nz=nz)
        self.shared_discriminator = shared_discriminator
        self.discriminator_vae = discriminator(input_nc=output_nc)
        # shared: discriminator_vae judges both branches (no second module, so no duplicate weights)
        self.discriminator_clr = None if shared_discriminator else discriminator(input_nc=output_nc)
        self.check_gradient_penalties(gan_mode, {"d_vae": "d_vae_gp", "d_clr": "d_clr_gp"})
        init = dict(init or {})
        if init.get("type"):
            for net in self.optimizer_groups().values():
                init_weights(net, init_type=init["type"], gain=float(init.get("gain", 0.02)))

    def optimizer_groups(self) -> dict[str, nn.Module]:
        nets = {"G": self.generator, "E": self.encoder}
        if self.shared_discriminator:
            return {**nets, "D": self.discriminator_vae}
        return {**nets, "D_vae": self.discriminator_vae, "D_clr": self.discriminator_clr}

    @property
    def clr_discriminator(self) -> nn.Module:
        """The discriminator of the cLR-GAN branch: its own, or the shared one."""
        return self.discriminator_vae if self.discriminator_clr is None else self.discriminator_clr

    # ---- one iteration's inputs and random draws ----------------------------------------------
    def prepare_iteration(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Any]:
        real_A = self.to_memory_format(batch["A"])
        real_B = self.to_memory_format(batch["B"])
        size = real_A.shape[0]
        if self.batch_split:
            # reference: first half is the cVAE-GAN ("encoded") half, second half only gives
            # D_clr its real images; fake_B_random is generated from the FIRST half's A.
            if size % 2:
                raise ValueError(
                    f"model.batch_split=true needs an even batch size, got {size}: set data.batch_size "
                    "to an even number or model.batch_split=false (both branches on the whole batch, as seed 000)"
                )
            half = size // 2
            inputs = {
                "real_A_encoded": real_A[:half],
                "real_B_encoded": real_B[:half],
                "real_B_random": real_B[half:],
            }
        else:
            half = size
            inputs = {"real_A_encoded": real_A, "real_B_encoded": real_B, "real_B_random": real_B}
        # order of draws: eps (reparameterisation) then z_random, as the reference's forward()
        draws = {"eps": torch.randn(half, self.nz, generator=generator), "z_random": torch.randn(half, self.nz, generator=generator)}
        if self.loss_weights.get("mode_seeking"):
            draws["z_random2"] = torch.randn(half, self.nz, generator=generator)
        # the penalties' interpolation weights (wgangp, non-zero weight only): one per image D judges
        draws.update(self.gradient_penalty_draws({"d_vae_gp": half, "d_clr_gp": half}, generator))
        inputs.update({name: value.to(self.device) for name, value in draws.items()})
        return inputs

    # ---- forward results ----------------------------------------------------------------------
    def forward_results(self) -> dict[str, ResultSpec]:
        def encoded(r: ForwardResults) -> tuple[Tensor, Tensor]:
            return self.encoder(r.inputs["real_B_encoded"])

        def z_encoded(r: ForwardResults) -> Tensor:
            mu, logvar = r["encoded"]
            return reparameterize(mu, logvar, r.inputs["eps"])

        def fake_B_encoded(r: ForwardResults) -> Tensor:
            return self.generator(r.inputs["real_A_encoded"], r["z_encoded"])

        def fake_B_random(r: ForwardResults) -> Tensor:
            return self.generator(r.inputs["real_A_encoded"], r.inputs["z_random"])

        def fake_B_random2(r: ForwardResults) -> Tensor:
            return self.generator(r.inputs["real_A_encoded"], r.inputs["z_random2"])

        def mu_random(r: ForwardResults) -> Tensor:
            mu, _ = self.encoder(r["fake_B_random"])
            return mu

        return {
            "encoded": ResultSpec(encoded, nets=("E",)),
            "z_encoded": ResultSpec(z_encoded),
            "fake_B_encoded": ResultSpec(fake_B_encoded, nets=("G",)),
            "fake_B_random": ResultSpec(fake_B_random, nets=("G",)),
            "fake_B_random2": ResultSpec(fake_B_random2, nets=("G",)),
            "mu_random": ResultSpec(mu_random, nets=("E",)),
        }

    # ---- loss terms ---------------------------------------------------------------------------
    def loss_terms(self) -> dict[str, Callable[[ForwardResults], Tensor]]:
        mode = self.gan_mode

        def vae_l1(r: ForwardResults) -> Tensor:
            return F.l1_loss(r["fake_B_encoded"], r.inputs["real_B_encoded"])

        def kl(r: ForwardResults) -> Tensor:
            return kl_divergence(*r["encoded"])

        def vae_gan(r: ForwardResults) -> Tensor:
            return generator_adversarial_loss(self.discriminator_vae(r["fake_B_encoded"]), mode)

        def clr_gan(r: ForwardResults) -> Tensor:
            return generator_adversarial_loss(self.clr_discriminator(r["fake_B_random"]), mode)

        def clr_latent(r: ForwardResults) -> Tensor:
            return latent_l1(r["mu_random"], r.inputs["z_random"])

        def mode_seeking(r: ForwardResults) -> Tensor:
            return mode_seeking_loss(
                r["fake_B_random"], r["fake_B_random2"], r.inputs["z_random"], r.inputs["z_random2"], self.mode_seeking_eps
            )

        def d_vae(r: ForwardResults) -> Tensor:
            fake = self.discriminator_vae(r.detached("fake_B_encoded"))
            real = self.discriminator_vae(r.inputs["real_B_encoded"])
            return discriminator_adversarial_loss(fake, real, mode)

        def d_clr(r: ForwardResults) -> Tensor:
            fake = self.clr_discriminator(r.detached("fake_B_random"))
            real = self.clr_discriminator(r.inputs["real_B_random"])
            return discriminator_adversarial_loss(fake, real, mode)

        # the gradient penalties judge the same real and (detached) fake images as d_vae / d_clr
        def d_vae_gp(r: ForwardResults) -> Tensor:
            return self.gradient_penalty_term(
                "d_vae_gp", self.discriminator_vae, r.inputs["real_B_encoded"], lambda: r.detached("fake_B_encoded"), r
            )

        def d_clr_gp(r: ForwardResults) -> Tensor:
            return self.gradient_penalty_term(
                "d_clr_gp", self.clr_discriminator, r.inputs["real_B_random"], lambda: r.detached("fake_B_random"), r
            )

        return {
            "vae_l1": vae_l1,
            "kl": kl,
            "vae_gan": vae_gan,
            "clr_gan": clr_gan,
            "clr_latent": clr_latent,
            "mode_seeking": mode_seeking,
            "d_vae": d_vae,
            "d_clr": d_clr,
            "d_vae_gp": d_vae_gp,
            "d_clr_gp": d_clr_gp,
        }

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, real_B: Tensor) -> Tensor:
        """The latent code of a target image: the encoder's mean (as the reference at test time)."""
        mu, _ = self.encoder(self.to_memory_format(real_B))
        return mu

    @property
    def latent_size(self) -> int:
        return self.nz

    def generate(self, real_A: Tensor, z: Tensor) -> Tensor:
        """G(A, z), differentiable in z: what CLIP guidance searches."""
        return self.generator(self.to_memory_format(real_A), z.to(real_A))

    @torch.no_grad()
    def reconstruct(self, batch: Mapping[str, Tensor]) -> Tensor:
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        return self.translate(real_A, self.encode(real_B))

    @torch.no_grad()
    def translate(self, real_A: Tensor, z: Tensor) -> Tensor:
        return self.generate(real_A, z)

    @torch.no_grad()
    def sample_outputs(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator) -> Tensor:
        """(S, N, C, H, W): ``num_samples`` outputs per input, each with its own z ~ N(0, I) drawn from
        ``generator`` (on the CPU, so the draws do not depend on the device)."""
        real_A = batch["A"].to(self.device)
        codes = torch.randn(num_samples, real_A.shape[0], self.nz, generator=generator)
        return torch.stack([self.translate(real_A, z.to(self.device)) for z in codes])

    def sample_columns(
        self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator
    ) -> list[tuple[str, Tensor]]:
        """Columns of a sample grid: input, ground truth, encoded reconstruction, random-z samples.

        The random codes are drawn from ``generator`` once per column and shared by all rows,
        so a column shows what one z does across inputs.
        """
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        columns = [("input", real_A), ("ground truth", real_B), ("encoded", self.reconstruct(batch))]
        for index in range(num_samples):
            z = torch.randn(1, self.nz, generator=generator).expand(real_A.shape[0], -1).to(self.device)
            columns.append((f"z{index + 1}", self.translate(real_A, z)))
        return columns

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        real_A, real_B = batch["A"], batch["B"]
        reconstruction = self.translate(real_A, self.encode(real_B))
        generator = torch.Generator().manual_seed(self.seed + batch_idx)
        z_1, z_2 = (torch.randn(real_A.shape[0], self.nz, generator=generator) for _ in range(2))
        diversity = (self.translate(real_A, z_1) - self.translate(real_A, z_2)).abs().mean()
        batch_size = real_A.shape[0]
        self.log("val/recon_l1", F.l1_loss(reconstruction, real_B), batch_size=batch_size, sync_dist=True)
        self.log("val/diversity_l1", diversity, batch_size=batch_size, sync_dist=True)
