"""Pure loss functions: adversarial (lsgan, vanilla, hinge, wgan-gp), KL, latent L1, mode seeking, TraVeL."""
from bicyclegan_pl.losses.adversarial import (
    GAN_MODES,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    gradient_penalty,
)
from bicyclegan_pl.losses.latent import kl_divergence, latent_l1, mode_seeking_loss, reparameterize
from bicyclegan_pl.losses.travel import pair_vectors, siamese_margin_loss, travel_loss

__all__ = [
    "GAN_MODES",
    "discriminator_adversarial_loss",
    "generator_adversarial_loss",
    "gradient_penalty",
    "kl_divergence",
    "latent_l1",
    "mode_seeking_loss",
    "pair_vectors",
    "reparameterize",
    "siamese_margin_loss",
    "travel_loss",
]
