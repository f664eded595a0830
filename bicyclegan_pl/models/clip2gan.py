"""CLIP2GAN (Wang et al., arXiv 2211.15045; seed 003) on the shared schedule engine.

Training needs images only: a real image x goes through the frozen CLIP image encoder, the
mapping network M turns its feature f into a latent code of a frozen generator G, and G(M(f))
must give x back (Fig. 2, Eq. 1-2). At inference CLIP's text encoder takes the image encoder's
place (Fig. 3), and edits add mapped text to mapped images, z' = z + beta * M(text) (Eq. 11-14).

Trained: M (optimiser ``M``) and a discriminator D against M (optimiser ``D``). Frozen: CLIP
(held outside the module's children: never in a checkpoint), G (a registered child without
gradients, so a CLIP2GAN checkpoint carries the generator it was trained with), and the
optional identity network and LPIPS (outside the children, like CLIP).

Loss terms (weights: seed 003 supplementary A, rec 1, LPIPS 1, adversarial 0.1, identity 1,
diversity 1, lambda 1): ``rec`` (Eq. 4), ``lpips`` (Eq. 5), ``adv`` (Eq. 6), ``id`` (Eq. 8), ``div``
(Eq. 9, on f and f + noise), and D's ``d`` (Eq. 7's log loss) and ``d_gp`` (Eq. 7's penalty); and one
of ours, off by default: ``rec_noisy``, Eq. 4 for the image rebuilt from the noisy feature (the way
LAFITE trains on pseudo text features), which ties what M does off the image features to the image.
How each printed equation is read: ``losses.clip2gan``.

The CLIP feature M sees. CLIP's image and text embeddings are compared after L2 normalisation,
so M gets normalised features (an image feature and a text feature then live on one sphere),
times ``feature_scale`` (``sqrt_dim``: the unit vector times sqrt(D), so a coordinate has about
unit variance, the scale of StyleGAN's z and of the paper's N(0, 1) noise; ``unit``: as is).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bicyclegan_pl.clip.loading import ClipModel
from bicyclegan_pl.losses import discriminator_adversarial_loss, interpolation_gradient_penalty
from bicyclegan_pl.losses.clip2gan import (
    diversity_loss,
    fake_gradient_penalty,
    identity_loss,
    reconstruction_loss,
    saturating_generator_loss,
)
from bicyclegan_pl.models.base import ScheduledTranslationModule
from bicyclegan_pl.nets.latent_generators import LatentGenerator
from bicyclegan_pl.runtime.schedule import ForwardResults, ResultSpec, ScheduleError

FEATURE_SCALES = ("sqrt_dim", "unit")
LATENT_PROJECTIONS = ("none", "sphere", "ellipsoid", "z_plus")
PRIOR_SAMPLES = 10_000  # prior codes that set the ellipsoid of latent_projection=ellipsoid
PRIOR_QUANTILE = 0.99   # its size: this quantile of their whitened distances from their mean
PENALTY_POINTS = ("fake", "interpolates")
EDIT_SPACES = ("gan", "clip")


class CLIP2GAN(ScheduledTranslationModule):
    """M: CLIP feature -> latent of a frozen G, trained to reconstruct images (no text in training)."""

    progress_bar_terms = ("rec", "adv", "div", "d")

    def __init__(
        self,
        clip: Callable[[], ClipModel],
        generator: Callable[[], LatentGenerator],
        mapping: Callable[..., nn.Module],
        discriminator: Callable[..., nn.Module],
        image_size: int = 32,
        output_nc: int = 3,
        feature_scale: str = "sqrt_dim",
        noise: Mapping[str, float] | None = None,
        penalty_at: str = "fake",
        latent_projection: str = "none",
        lpips: Callable[[], nn.Module] | None = None,
        identity: Callable[[], nn.Module] | None = None,
        identity_size: int = 112,
        **schedule_options: Any,
    ):
        super().__init__(**schedule_options)
        if feature_scale not in FEATURE_SCALES:
            raise ScheduleError(f"model.feature_scale must be one of {', '.join(FEATURE_SCALES)}, got {feature_scale!r}")
        if penalty_at not in PENALTY_POINTS:
            raise ScheduleError(f"model.penalty_at must be one of {', '.join(PENALTY_POINTS)}, got {penalty_at!r}")
        if latent_projection not in LATENT_PROJECTIONS:
            raise ScheduleError(f"model.latent_projection must be one of {', '.join(LATENT_PROJECTIONS)}, got {latent_projection!r}")
        self.feature_scale, self.penalty_at, self.latent_projection = feature_scale, penalty_at, latent_projection
        noise = {"mean": 0.0, "std": 1.0, "renormalize": False, **dict(noise or {})}
        self.noise_mean, self.noise_std = float(noise["mean"]), float(noise["std"])
        self.noise_renormalize = bool(noise["renormalize"])
        object.__setattr__(self, "clip", clip())  # frozen and outside the children (see the module doc)
        self.clip.model.requires_grad_(False).eval()
        self.generator = generator().requires_grad_(False).eval()
        if latent_projection == "sphere" and self.generator.num_ws > 1:
            raise ScheduleError(
                "model.latent_projection=sphere rescales a z-space code (DCGAN); this generator takes W+ "
                f"({self.generator.num_ws} x {self.generator.latent_shape[-1]}): set model.latent_projection=none (the paper), z_plus or ellipsoid"
            )
        if latent_projection == "z_plus":
            if self.generator.num_ws == 1:
                raise ScheduleError(
                    f"model.latent_projection=z_plus maps each layer's code through G's mapping network; "
                    f"{type(self.generator).__name__} has none: use sphere (DCGAN) or none"
                )
            if self.generator.z_dim != self.generator.latent_shape[-1]:
                raise ScheduleError("model.latent_projection=z_plus needs z_dim == w_dim (as in rosinality's StyleGAN2)")
        if latent_projection == "ellipsoid":
            centre, shape, radius = prior_ellipsoid(self.generator)
            self.register_buffer("latent_centre", centre)
            self.register_buffer("latent_shape_factor", shape)
            self.register_buffer("latent_radius", radius)
        if self.generator.image_size != image_size:
            raise ScheduleError(
                f"the frozen generator makes {self.generator.image_size} px images but data.crop_size={image_size}: "
                f"set data.crop_size={self.generator.image_size} (and data.load_size) or use a generator of that size"
            )
        self.check_gradient_penalties("vanilla", {"d": "d_gp"})  # a penalty with model.compile stops here
        feature_dim = int(self.clip.model.config.projection_dim)
        self.mapping = mapping(in_dim=feature_dim, latent_shape=self.generator.latent_shape)
        self.discriminator = discriminator(image_size=image_size, input_nc=output_nc)
        object.__setattr__(self, "lpips", _optional(lpips, self.loss_weights.get("lpips"), "lpips", "model.lpips"))
        object.__setattr__(self, "identity", _optional(identity, self.loss_weights.get("id"), "id", "model.identity"))
        self.identity_size = int(identity_size)
        self.feature_dim = feature_dim

    def optimizer_groups(self) -> dict[str, nn.Module]:
        return {"M": self.mapping, "D": self.discriminator}

    def batch_size_of(self, batch: Mapping[str, Any]) -> int:
        return int(batch["B"].shape[0])

    def train(self, mode: bool = True) -> CLIP2GAN:
        super().train(mode)
        self.generator.eval()  # frozen: DCGAN's BatchNorm keeps its running statistics
        return self

    def _frozen_modules(self) -> list[nn.Module]:
        return [module for module in (self.clip.model, self.lpips, self.identity) if module is not None]

    def _apply(self, fn, recurse: bool = True):
        # .to(device) / .to(dtype) also move the frozen networks that are not registered children
        super()._apply(fn, recurse)
        for module in self._frozen_modules():
            module._apply(fn, recurse)
        return self

    # ---- features and codes -------------------------------------------------------------------
    def _scaled(self, normalised: Tensor) -> Tensor:
        return normalised * math.sqrt(self.feature_dim) if self.feature_scale == "sqrt_dim" else normalised

    @torch.no_grad()
    def image_features(self, images: Tensor) -> Tensor:
        """f = C_img(x) (Eq. 1), normalised and scaled: what M takes."""
        return self._scaled(self.clip.encode_images(images.to(self.device)).float())

    @torch.no_grad()
    def text_features(self, texts: Sequence[str], shift: Tensor | None = None) -> Tensor:
        """C_text(t), normalised and scaled like the image features (M's input at inference).
        ``shift`` (see :meth:`modality_gap`) is added to the unit text features before scaling."""
        features = self.clip.encode_text(list(texts)).float()
        if shift is not None:
            features = torch.nn.functional.normalize(features + shift.to(features), dim=1)
        return self._scaled(features)

    @torch.no_grad()
    def modality_gap(self, images: Tensor, captions: Sequence[str]) -> Tensor:
        """mean(C_img(x)) - mean(C_text(caption)) over image-caption pairs, on unit features: the
        offset between CLIP's image and text features (the "modality gap"). Not in the paper: M is
        trained on image features only, and text features lie off them (here the nearest image
        feature of a prompt has cosine 0.52, of an image 0.97)."""
        image_features = self.clip.encode_images(images.to(self.device)).float()
        return image_features.mean(0) - self.clip.encode_text(list(captions)).float().mean(0)

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator) -> Tensor:
        """The diversity noise on CLIP features: N(mean, std^2) per coordinate (``model.noise``)."""
        return (self.noise_mean + self.noise_std * torch.randn(*shape, generator=generator)).to(self.device)

    def project(self, latent: Tensor) -> Tensor:
        """``sphere``: each latent code rescaled to norm sqrt(its size), where G's N(0, I) training
        codes concentrate (for z-space generators such as DCGAN); ``ellipsoid``: each per-layer code c
        (each w of W+, or z) moved into the ellipsoid of G's own prior codes (:func:`prior_ellipsoid`:
        centre m, covariance L L^T, whitened radius R): u = L^-1 (c - m), c' = m + L u R tanh(|u| / R) / |u|,
        a smooth bijection of all codes onto the open ellipsoid, so M reaches every code G was trained
        on and none far outside it; ``z_plus``: M's codes are read as one z per layer and go through
        G's own mapping network (PixelNorm, then its MLP), so every w is one G can produce (Z+);
        ``none``: as it is (the paper). Both bounds are per layer, and neither stopped W+ codes from
        text making images far out of range (experiments/clip2gan_synthetic, Round 3): the layers'
        codes can each be typical while their combination is not."""
        if self.latent_projection == "none":
            return latent
        if self.latent_projection == "z_plus":
            return self.generator.map_per_layer(latent)
        if self.latent_projection == "ellipsoid":
            codes = latent.reshape(latent.shape[0], *self.latent_centre.shape)  # (B, rows, dim)
            offset = (codes - self.latent_centre).permute(1, 2, 0)  # (rows, dim, B)
            whitened = torch.linalg.solve_triangular(self.latent_shape_factor, offset, upper=False)
            distance = whitened.norm(dim=1, keepdim=True).clamp(min=1e-8)
            radius = self.latent_radius.view(-1, 1, 1)
            bounded = self.latent_shape_factor @ (whitened * (radius * torch.tanh(distance / radius) / distance))
            return (self.latent_centre + bounded.permute(2, 0, 1)).reshape(latent.shape)
        flat = latent.flatten(1)
        return (flat * math.sqrt(flat.shape[1]) / flat.norm(dim=1, keepdim=True).clamp(min=1e-8)).view_as(latent)

    def to_latent(self, features: Tensor) -> Tensor:
        """M(f), projected (``model.latent_projection``)."""
        return self.project(self.mapping(features))

    def add_noise(self, features: Tensor, noise: Tensor) -> Tensor:
        """f + n, and with ``model.noise.renormalize`` brought back to the features' norm (LAFITE's
        pseudo text features): a noisy feature then lies on the sphere where image and text
        features lie, instead of further out, where M could tell it apart by its norm alone."""
        noisy = features + noise
        if not self.noise_renormalize:
            return noisy
        return noisy * features.norm(dim=1, keepdim=True) / noisy.norm(dim=1, keepdim=True).clamp(min=1e-8)

    def decode(self, features: Tensor) -> Tensor:
        """G(M(f)): images for CLIP features (differentiable in M's weights)."""
        return self.generator.synthesize(self.to_latent(features))

    # ---- one iteration ------------------------------------------------------------------------
    def prepare_iteration(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Any]:
        real = self.to_memory_format(batch["B"])
        inputs: dict[str, Any] = {"real": real}
        if self.loss_weights.get("div") or self.loss_weights.get("rec_noisy"):
            inputs["noise"] = self.draw_noise((real.shape[0], self.feature_dim), generator)
        if self.loss_weights.get("d_gp") and self.penalty_at == "interpolates":
            inputs["alpha"] = torch.rand(real.shape[0], generator=generator).to(self.device)
        return inputs

    def forward_results(self) -> dict[str, ResultSpec]:
        return {
            "features": ResultSpec(lambda r: self.image_features(r.inputs["real"]), nets=()),
            "reconstruction": ResultSpec(lambda r: self.decode(r["features"]), nets=("M",)),
            "noisy_features": ResultSpec(lambda r: self.add_noise(r["features"], r.inputs["noise"]), nets=()),
            "noisy_reconstruction": ResultSpec(lambda r: self.decode(r["noisy_features"]), nets=("M",)),
        }

    def loss_terms(self) -> dict[str, Callable[[ForwardResults], Tensor]]:
        def rec(r: ForwardResults) -> Tensor:
            return reconstruction_loss(r.inputs["real"], r["reconstruction"])

        def rec_noisy(r: ForwardResults) -> Tensor:  # ours, off by default: x rebuilt from f + noise as well
            return reconstruction_loss(r.inputs["real"], r["noisy_reconstruction"])

        def lpips(r: ForwardResults) -> Tensor:
            return self.lpips(r["reconstruction"].clamp(-1, 1), r.inputs["real"]).mean()

        def adv(r: ForwardResults) -> Tensor:
            return saturating_generator_loss(self.discriminator(r["reconstruction"]))

        def identity(r: ForwardResults) -> Tensor:
            size = (self.identity_size, self.identity_size)
            real = F.interpolate(r.inputs["real"], size=size, mode="bilinear", align_corners=False)
            rebuilt = F.interpolate(r["reconstruction"], size=size, mode="bilinear", align_corners=False)
            with torch.no_grad():
                target = self.identity(real)
            return identity_loss(target, self.identity(rebuilt))

        def div(r: ForwardResults) -> Tensor:
            return diversity_loss(r["features"], r["noisy_features"], r["reconstruction"], r["noisy_reconstruction"])

        def d(r: ForwardResults) -> Tensor:
            fake = self.discriminator(r.detached("reconstruction"))
            return discriminator_adversarial_loss(fake, self.discriminator(r.inputs["real"]), "vanilla")

        def d_gp(r: ForwardResults) -> Tensor:
            if self.penalty_at == "fake":
                return fake_gradient_penalty(self.discriminator, r.detached("reconstruction"))
            if "alpha" not in r.inputs:
                raise ScheduleError("d_gp is in model.schedule but not in model.loss_weights: set model.loss_weights.d_gp")
            return interpolation_gradient_penalty(self.discriminator, r.inputs["real"], r.detached("reconstruction"), r.inputs["alpha"])

        return {"rec": rec, "rec_noisy": rec_noisy, "lpips": lpips, "adv": adv, "id": identity, "div": div, "d": d, "d_gp": d_gp}

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate_from_text(
        self, prompts: Sequence[str], num_samples: int, generator: torch.Generator, noise: bool = True,
        shift: Tensor | None = None,
    ) -> Tensor:
        """(S, P, C, H, W): ``num_samples`` images per prompt, G(M(C_text(t) + n)) with fresh noise n
        per sample (Fig. 3 and 6; without ``noise`` every sample is G(M(C_text(t)))); ``shift``: see
        :meth:`text_features`."""
        features = self.text_features(prompts, shift)
        samples = []
        for _ in range(num_samples):
            noisy = self.add_noise(features, self.draw_noise(features.shape, generator)) if noise else features
            samples.append(self.decode(noisy))
        return torch.stack(samples)

    @torch.no_grad()
    def edit(self, images: Tensor, prompt: str, betas: Sequence[float], space: str = "gan") -> Tensor:
        """(len(betas), N, C, H, W) edits of ``images`` towards ``prompt``. ``gan``: z' = M(C_img(x)) +
        beta * M(C_text(t)) (Eq. 11-14; with a ``latent_projection`` the sum is projected too); ``clip``: G(M(C_img(x) + beta * C_text(t))), the arithmetic in
        CLIP space (supplementary Table 6)."""
        if space not in EDIT_SPACES:
            raise ValueError(f"space must be one of {', '.join(EDIT_SPACES)}, got {space!r}")
        image_features = self.image_features(images)
        text_features = self.text_features([prompt]).expand_as(image_features)
        if space == "clip":
            return torch.stack([self.decode(image_features + beta * text_features) for beta in betas])
        latent, direction = self.to_latent(image_features), self.to_latent(text_features)
        return torch.stack([self.generator.synthesize(self.project(latent + beta * direction)) for beta in betas])

    @torch.no_grad()
    def sample_outputs(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator) -> Tensor:
        """Reconstructions of the batch's images from their CLIP features: the first without noise,
        G(M(f)) (what FID and the realism measures judge), the others with fresh noise each."""
        features = self.image_features(batch["B"])
        noisy = [self.add_noise(features, self.draw_noise(features.shape, generator)) for _ in range(num_samples - 1)]
        return torch.stack([self.decode(inputs) for inputs in [features, *noisy]])

    def sample_columns(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator):
        real = batch["B"].to(self.device)
        rebuilt, *noisy = self.sample_outputs(batch, num_samples + 1, generator)
        return [("real", real), ("G(M(f))", rebuilt), *((f"noise {index + 1}", image) for index, image in enumerate(noisy))]

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        real = batch["B"]
        with torch.no_grad():
            error = reconstruction_loss(real, self.decode(self.image_features(real)))
        self.log("val/rec", error, batch_size=real.shape[0], sync_dist=True)


@torch.no_grad()
def prior_ellipsoid(generator: LatentGenerator) -> tuple[Tensor, Tensor, Tensor]:
    """Centre (rows, dim), Cholesky factor L of the covariance (rows, dim, dim) and whitened radius
    (rows,) of G's prior codes, per row of its latent (each layer's w of W+, or z), over
    ``PRIOR_SAMPLES`` codes drawn with a fixed seed (so a resumed or reloaded run gets the same
    ellipsoid): their mean, their covariance (plus a 1e-6 relative ridge), and the ``PRIOR_QUANTILE``
    quantile of their distances from the mean in whitened coordinates (Mahalanobis distances).
    Whitened, because a ball of plain distances also admits directions in which W hardly varies."""
    codes = generator.prior_latents(PRIOR_SAMPLES, torch.Generator().manual_seed(0)).double()
    codes = codes.reshape(PRIOR_SAMPLES, -1, codes.shape[-1])
    centre = codes.mean(0)
    offsets = (codes - centre).permute(1, 0, 2)  # (rows, samples, dim)
    covariance = offsets.transpose(1, 2) @ offsets / (PRIOR_SAMPLES - 1)
    ridge = 1e-6 * covariance.diagonal(dim1=1, dim2=2).mean(1).view(-1, 1, 1)
    shape = torch.linalg.cholesky(covariance + ridge * torch.eye(codes.shape[-1], dtype=codes.dtype))
    whitened = torch.linalg.solve_triangular(shape, offsets.transpose(1, 2), upper=False)  # (rows, dim, samples)
    radius = torch.quantile(whitened.norm(dim=1), PRIOR_QUANTILE, dim=1)
    return centre.float(), shape.float(), radius.float()


def _optional(factory: Callable[[], nn.Module] | None, weight: float | None, term: str, key: str) -> nn.Module | None:
    """The frozen network of an optional loss term: built only when the term has a weight."""
    if not weight:
        return None
    if factory is None:
        raise ScheduleError(f"model.loss_weights.{term}={weight} needs {key} (or set model.loss_weights.{term}=0)")
    return factory().requires_grad_(False).eval()
