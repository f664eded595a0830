"""TraVeLGAN (Amodio & Krishnaswamy 2019) and CLIPTraVeLGAN (seed 002): one-sided unpaired
translation A -> B whose generator keeps the transformation vectors between images of a batch
in a Siamese space S (KrishnaswamyLab/travelgan ``travelgan.py``; CLIPTraVeLGAN: Bodyanskiy et al.,
COLINS 2023, and their Kaggle notebook unfriendlyai/cliptravelgan-monet-article-implementation),
on the shared schedule engine.

The Siamese space is a constructor argument (``model/siamese``):
- ``clip``: a frozen CLIP vision encoder (CLIPTraVeLGAN); ``clip_random`` its random-weight ablation;
- ``learned``: TraVeLGAN's own network, trained with the generator (optimiser ``S``) and kept from
  collapsing by the margin loss.
A frozen space is held outside the module's registered children: it never enters the state dict,
the optimisers or a checkpoint, and receives no gradient (its weights do not require one).

Optimisers (fixed order): G, D, and S for a learned space. Loss terms: gan, travel, margin, d, and
d_gp, D's gradient penalty (``model.gradient_penalty``: wgangp on interpolates of d's real and fake
images, or r1 on its real images).
Unlike TraVeLGAN's code (two generators, one per direction) this is one-sided, as CLIPTraVeLGAN.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bicyclegan_pl.losses import discriminator_adversarial_loss, generator_adversarial_loss
from bicyclegan_pl.losses.travel import semantic_preservation, siamese_margin_loss, travel_loss
from bicyclegan_pl.models.base import ScheduledTranslationModule
from bicyclegan_pl.nets.init import init_weights
from bicyclegan_pl.runtime.schedule import ForwardResults, ResultSpec

NetFactory = Callable[..., nn.Module]


class TravelGAN(ScheduledTranslationModule):
    #: one output per input (evaluate skips LPIPS diversity)
    deterministic = True
    #: evaluate measures how much of the input survives in the Siamese space
    has_semantic_space = True
    progress_bar_terms = ("gan", "travel", "margin", "d")

    def __init__(
        self,
        generator: NetFactory,
        discriminator: NetFactory,
        siamese: NetFactory,
        input_nc: int = 3,
        output_nc: int = 3,
        image_size: int = 256,
        gan_mode: str = "vanilla",
        travel: Mapping[str, Any] | None = None,
        margin: float = 10.0,
        init: Mapping[str, Any] | None = None,
        **schedule_options: Any,
    ):
        super().__init__(**schedule_options)
        self.check_gradient_penalties(gan_mode, {"d": "d_gp"})
        self.gan_mode = gan_mode
        self.travel_options = {"cosine_weight": 1.0, "l2_weight": 0.0, "reduction": "sum", **dict(travel or {})}
        self.margin = float(margin)
        self.generator = generator(input_nc=input_nc, output_nc=output_nc, nz=0)
        self.discriminator = _build(discriminator, input_nc=output_nc, image_size=image_size)
        space = _build(siamese, input_nc=input_nc, output_nc=output_nc, image_size=image_size)
        self.siamese_is_learned = not getattr(space, "frozen", False)
        if self.siamese_is_learned:
            self.siamese = space
        else:
            object.__setattr__(self, "frozen_siamese", space)  # not a registered child (see the module doc)
        if self.loss_weights.get("margin") and not self.siamese_is_learned:
            raise ValueError("model.loss_weights.margin > 0 needs a learned Siamese space (model/siamese=learned)")
        init = dict(init or {})
        if init.get("type"):
            for net in self.optimizer_groups().values():
                init_weights(net, init_type=init["type"], gain=float(init.get("gain", 0.02)))

    @property
    def space(self) -> nn.Module:
        return self.siamese if self.siamese_is_learned else self.frozen_siamese

    def optimizer_groups(self) -> dict[str, nn.Module]:
        groups = {"G": self.generator, "D": self.discriminator}
        if self.siamese_is_learned:
            groups["S"] = self.siamese
        return groups

    def _apply(self, fn, recurse: bool = True):
        # .to(device) / .to(dtype) of the module (Lightning's, evaluate's) also move the frozen
        # space, which is deliberately not a registered child
        super()._apply(fn, recurse)
        if not self.siamese_is_learned:
            self.frozen_siamese._apply(fn, recurse)
        return self

    # ---- one iteration ------------------------------------------------------------------------
    def prepare_iteration(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Any]:
        real_A, real_B = self.to_memory_format(batch["A"]), self.to_memory_format(batch["B"])
        # the penalty's interpolation weights (wgangp, non-zero weight only)
        alphas = self.gradient_penalty_draws({"d_gp": real_B.shape[0]}, generator)
        return {"real_A": real_A, "real_B": real_B, **{name: value.to(self.device) for name, value in alphas.items()}}

    def forward_results(self) -> dict[str, ResultSpec]:
        space_nets = ("S",) if self.siamese_is_learned else ()
        return {
            "fake_B": ResultSpec(lambda r: self.generator(r.inputs["real_A"]), nets=("G",)),
            "embedding_A": ResultSpec(lambda r: self.space(r.inputs["real_A"], "A"), nets=space_nets),
            "embedding_real_B": ResultSpec(lambda r: self.space(r.inputs["real_B"], "B"), nets=space_nets),
            "embedding_fake_B": ResultSpec(lambda r: self.space(r["fake_B"], "B"), nets=space_nets),
        }

    def loss_terms(self) -> dict[str, Callable[[ForwardResults], Tensor]]:
        mode = self.gan_mode

        def gan(r: ForwardResults) -> Tensor:
            return generator_adversarial_loss(self.discriminator(r["fake_B"]), mode)

        def travel(r: ForwardResults) -> Tensor:
            return travel_loss(r["embedding_A"], r["embedding_fake_B"], **self.travel_options)

        def margin(r: ForwardResults) -> Tensor:
            # TraVeLGAN: on the real images of each domain, averaged
            return 0.5 * (
                siamese_margin_loss(r["embedding_A"], self.margin) + siamese_margin_loss(r["embedding_real_B"], self.margin)
            )

        def d(r: ForwardResults) -> Tensor:
            fake = self.discriminator(r.detached("fake_B"))
            return discriminator_adversarial_loss(fake, self.discriminator(r.inputs["real_B"]), mode)

        def d_gp(r: ForwardResults) -> Tensor:  # on the same real and fake images as d
            return self.gradient_penalty_term("d_gp", self.discriminator, r.inputs["real_B"], lambda: r.detached("fake_B"), r)

        return {"gan": gan, "travel": travel, "margin": margin, "d": d, "d_gp": d_gp}

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, real_A: Tensor) -> Tensor:
        return self.generator(self.to_memory_format(real_A))

    @torch.no_grad()
    def sample_outputs(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator) -> Tensor:
        fake_B = self.translate(batch["A"].to(self.device))
        return fake_B.unsqueeze(0).expand(num_samples, *fake_B.shape)

    def sample_columns(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator):
        real_A = batch["A"].to(self.device)
        return [("real A", real_A), ("fake B", self.translate(real_A)), ("a real B", batch["B"].to(self.device))]

    @torch.no_grad()
    def semantic_embeddings(self, real_A: Tensor) -> tuple[Tensor, Tensor]:
        """(S(x), S(G(x))) in the Siamese space: what ``metrics.semantic`` measures preservation in."""
        real_A = real_A.to(self.device)
        return self.space(real_A, "A"), self.space(self.translate(real_A), "B")

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        size = batch["A"].shape[0]
        if size < 2:
            return
        # no reconstruction to log for a one-sided translator: how much of the input survives instead
        for name, value in semantic_preservation(*self.semantic_embeddings(batch["A"])).items():
            self.log(f"val/{name}", value, batch_size=size, sync_dist=True)


def _build(factory: NetFactory, **available: Any) -> nn.Module:
    """Call a net factory with the keyword arguments it declares (nets differ in what they need)."""
    import inspect

    target = factory.func if hasattr(factory, "func") else factory
    parameters = inspect.signature(target).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return factory(**available)
    return factory(**{k: v for k, v in available.items() if k in parameters})
