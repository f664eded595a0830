"""CycleGAN (Zhu et al. 2017) as the authors' implementation (junyanz/pytorch-CycleGAN-and-pix2pix
``models/cycle_gan_model.py``), on the shared schedule engine.

Names follow the reference: G_A maps A -> B (the paper's G), G_B maps B -> A (F); D_A judges the
B domain (D_Y), D_B the A domain (D_X). The reference's two optimisers (chain(G_A, G_B) and
chain(D_A, D_B)) are four here, one per net: Adam is per parameter, so the update is the same,
and schedules can step the nets in other orders.

Optimisers (fixed order): G_A, G_B, D_A, D_B.
Loss terms: gan_A, gan_B, cycle_A, cycle_B, idt_A, idt_B, d_A, d_B, and the gradient penalties
d_A_gp, d_B_gp (``model.gradient_penalty``: wgangp on interpolates of the real and pooled fake
images of d_A / d_B, or r1 on their real images).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bicyclegan_pl.losses import discriminator_adversarial_loss, generator_adversarial_loss
from bicyclegan_pl.models.base import ScheduledTranslationModule
from bicyclegan_pl.models.image_pool import ImagePool
from bicyclegan_pl.nets.init import init_weights
from bicyclegan_pl.runtime.schedule import ForwardResults, ResultSpec

NetFactory = Callable[..., nn.Module]


class CycleGAN(ScheduledTranslationModule):
    #: one output per input (evaluate skips LPIPS diversity)
    deterministic = True
    progress_bar_terms = ("gan_A", "gan_B", "cycle_A", "cycle_B", "d_A", "d_B")

    def __init__(
        self,
        generator: NetFactory,
        discriminator: NetFactory,
        input_nc: int = 3,
        output_nc: int = 3,
        gan_mode: str = "lsgan",
        pool_size: int = 50,
        init: Mapping[str, Any] | None = None,
        **schedule_options: Any,
    ):
        super().__init__(**schedule_options)
        identity = self.loss_weights.get("idt_A", 0.0) or self.loss_weights.get("idt_B", 0.0)
        if identity and input_nc != output_nc:
            raise ValueError(
                f"the identity loss feeds each domain to the other's generator, which needs input_nc == output_nc "
                f"(got {input_nc} and {output_nc}): set model.loss_weights.idt_A=0 model.loss_weights.idt_B=0"
            )
        self.check_gradient_penalties(gan_mode, {"d_A": "d_A_gp", "d_B": "d_B_gp"})
        self.gan_mode = gan_mode
        self.generator_A = generator(input_nc=input_nc, output_nc=output_nc)
        self.generator_B = generator(input_nc=output_nc, output_nc=input_nc)
        self.discriminator_A = discriminator(input_nc=output_nc)
        self.discriminator_B = discriminator(input_nc=input_nc)
        self.pool_fake_B = ImagePool(pool_size)  # D_A's fakes
        self.pool_fake_A = ImagePool(pool_size)  # D_B's fakes
        init = dict(init or {})
        if init.get("type"):
            for net in self.optimizer_groups().values():
                init_weights(net, init_type=init["type"], gain=float(init.get("gain", 0.02)))

    def optimizer_groups(self) -> dict[str, nn.Module]:
        return {
            "G_A": self.generator_A,
            "G_B": self.generator_B,
            "D_A": self.discriminator_A,
            "D_B": self.discriminator_B,
        }

    # ---- one iteration's inputs and random draws ----------------------------------------------
    def prepare_iteration(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Any]:
        real_A, real_B = self.to_memory_format(batch["A"]), self.to_memory_format(batch["B"])
        inputs = {
            "real_A": real_A,
            "real_B": real_B,
            "pool_draws_B": self.pool_fake_B.draw(real_A.shape[0], generator),
            "pool_draws_A": self.pool_fake_A.draw(real_B.shape[0], generator),
        }
        # the penalties' interpolation weights (wgangp, non-zero weight only): D_A judges B, D_B judges A
        alphas = self.gradient_penalty_draws({"d_A_gp": real_B.shape[0], "d_B_gp": real_A.shape[0]}, generator)
        inputs.update({name: value.to(self.device) for name, value in alphas.items()})
        return inputs

    # ---- forward results --------------------------------------------------------------------
    def forward_results(self) -> dict[str, ResultSpec]:
        # All generator outputs in one result, computed in the reference's order (forward():
        # fake_B, rec_A, fake_A, rec_B; then backward_G's identity outputs): autograd accumulates
        # a net's weight gradients in the order its uses were recorded, so the same order gives
        # bit-identical gradients. Any step of G_A or G_B invalidates them all together.
        def generated(r: ForwardResults) -> dict[str, Tensor]:
            real_A, real_B = r.inputs["real_A"], r.inputs["real_B"]
            out = {"fake_B": self.generator_A(real_A)}
            out["rec_A"] = self.generator_B(out["fake_B"])
            out["fake_A"] = self.generator_B(real_B)
            out["rec_B"] = self.generator_A(out["fake_A"])
            if self.loss_weights.get("idt_A"):
                out["idt_A"] = self.generator_A(real_B)
            if self.loss_weights.get("idt_B"):
                out["idt_B"] = self.generator_B(real_A)
            return out

        def output(name: str) -> ResultSpec:
            return ResultSpec(lambda r: r["generated"][name])

        # the fakes D sees, through the pools: computed once per iteration (no net dependency),
        # from the fakes as generated before any update in this iteration (as the reference)
        def pooled_fake_B(r: ForwardResults) -> Tensor:
            return self.pool_fake_B.query(r.detached("fake_B"), r.inputs["pool_draws_B"])

        def pooled_fake_A(r: ForwardResults) -> Tensor:
            return self.pool_fake_A.query(r.detached("fake_A"), r.inputs["pool_draws_A"])

        return {
            "generated": ResultSpec(generated, nets=("G_A", "G_B")),
            **{name: output(name) for name in ("fake_B", "rec_A", "fake_A", "rec_B", "idt_A", "idt_B")},
            "pooled_fake_B": ResultSpec(pooled_fake_B),
            "pooled_fake_A": ResultSpec(pooled_fake_A),
        }

    # ---- loss terms ---------------------------------------------------------------------------
    def loss_terms(self) -> dict[str, Callable[[ForwardResults], Tensor]]:
        mode = self.gan_mode

        def gan_A(r: ForwardResults) -> Tensor:
            return generator_adversarial_loss(self.discriminator_A(r["fake_B"]), mode)

        def gan_B(r: ForwardResults) -> Tensor:
            return generator_adversarial_loss(self.discriminator_B(r["fake_A"]), mode)

        def cycle_A(r: ForwardResults) -> Tensor:
            return F.l1_loss(r["rec_A"], r.inputs["real_A"])

        def cycle_B(r: ForwardResults) -> Tensor:
            return F.l1_loss(r["rec_B"], r.inputs["real_B"])

        def idt_A(r: ForwardResults) -> Tensor:
            return F.l1_loss(r["idt_A"], r.inputs["real_B"])

        def idt_B(r: ForwardResults) -> Tensor:
            return F.l1_loss(r["idt_B"], r.inputs["real_A"])

        def d_A(r: ForwardResults) -> Tensor:
            fake = self.discriminator_A(r["pooled_fake_B"])
            return discriminator_adversarial_loss(fake, self.discriminator_A(r.inputs["real_B"]), mode)

        def d_B(r: ForwardResults) -> Tensor:
            fake = self.discriminator_B(r["pooled_fake_A"])
            return discriminator_adversarial_loss(fake, self.discriminator_B(r.inputs["real_A"]), mode)

        # the gradient penalties judge the same real and pooled fake images as d_A / d_B
        def d_A_gp(r: ForwardResults) -> Tensor:
            return self.gradient_penalty_term(
                "d_A_gp", self.discriminator_A, r.inputs["real_B"], lambda: r["pooled_fake_B"], r
            )

        def d_B_gp(r: ForwardResults) -> Tensor:
            return self.gradient_penalty_term(
                "d_B_gp", self.discriminator_B, r.inputs["real_A"], lambda: r["pooled_fake_A"], r
            )

        return {
            "gan_A": gan_A, "gan_B": gan_B, "cycle_A": cycle_A, "cycle_B": cycle_B,
            "idt_A": idt_A, "idt_B": idt_B, "d_A": d_A, "d_B": d_B, "d_A_gp": d_A_gp, "d_B_gp": d_B_gp,
        }

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, real_A: Tensor) -> Tensor:
        return self.generator_A(self.to_memory_format(real_A))

    @torch.no_grad()
    def translate_back(self, real_B: Tensor) -> Tensor:
        return self.generator_B(self.to_memory_format(real_B))

    @torch.no_grad()
    def sample_outputs(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator) -> Tensor:
        """(S, N, C, H, W): G_A(A) repeated; CycleGAN is deterministic."""
        fake_B = self.translate(batch["A"].to(self.device))
        return fake_B.unsqueeze(0).expand(num_samples, *fake_B.shape)

    def evaluation_directions(self) -> dict[str, tuple[Callable[[Mapping[str, Tensor]], Tensor], str]]:
        """Per direction: (the outputs for a batch, the batch key of the real images they are compared with)."""
        return {
            "AtoB": (lambda batch: self.translate(batch["A"].to(self.device)), "B"),
            "BtoA": (lambda batch: self.translate_back(batch["B"].to(self.device)), "A"),
        }

    def sample_columns(
        self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator
    ) -> list[tuple[str, Tensor]]:
        """real A, fake B, reconstructed A | real B, fake A, reconstructed B."""
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        fake_B, fake_A = self.translate(real_A), self.translate_back(real_B)
        return [
            ("real A", real_A), ("fake B", fake_B), ("rec A", self.translate_back(fake_B)),
            ("real B", real_B), ("fake A", fake_A), ("rec B", self.translate(fake_A)),
        ]

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        real_A, real_B = batch["A"], batch["B"]
        fake_B, fake_A = self.translate(real_A), self.translate_back(real_B)
        size = real_A.shape[0]
        cycle_A = F.l1_loss(self.translate_back(fake_B), real_A)
        cycle_B = F.l1_loss(self.translate(fake_A), real_B)
        self.log("val/cycle_A_l1", cycle_A, batch_size=size, sync_dist=True)
        self.log("val/cycle_B_l1", cycle_B, batch_size=size, sync_dist=True)
        # the framework's default checkpoint monitor: here, the mean cycle reconstruction error
        self.log("val/recon_l1", (cycle_A + cycle_B) / 2, batch_size=size, sync_dist=True)

    # ---- the pools are training state: keep them across a resume ------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["image_pools"] = {"fake_B": self.pool_fake_B.state(), "fake_A": self.pool_fake_A.state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        pools = checkpoint.get("image_pools", {})
        self.pool_fake_B.load_state(pools.get("fake_B", []), self.device)
        self.pool_fake_A.load_state(pools.get("fake_A", []), self.device)
