"""Pure loss functions: adversarial (lsgan, vanilla, hinge, wgan-gp), gradient penalties (WGAN-GP, R1),
KL, latent L1, mode seeking, TraVeL."""
from bicyclegan_pl.losses.adversarial import (
    GAN_MODES,
    GRADIENT_PENALTIES,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    gradient_penalty,
    interpolation_gradient_penalty,
    r1_penalty,
)
from bicyclegan_pl.losses.latent import kl_divergence, latent_l1, mode_seeking_loss, reparameterize
from bicyclegan_pl.losses.travel import pair_vectors, siamese_margin_loss, travel_loss

__all__ = [
    "GAN_MODES",
    "GRADIENT_PENALTIES",
    "discriminator_adversarial_loss",
    "generator_adversarial_loss",
    "gradient_penalty",
    "interpolation_gradient_penalty",
    "kl_divergence",
    "latent_l1",
    "mode_seeking_loss",
    "pair_vectors",
    "r1_penalty",
    "reparameterize",
    "siamese_margin_loss",
    "travel_loss",
]
