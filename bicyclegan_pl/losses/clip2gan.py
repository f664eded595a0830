"""CLIP2GAN's loss terms (seed 003, Sec. 3.2) that the other systems do not have.

How the printed equations are read:
- Eq. 4, L_rec = ||x - x'||_2: the mean squared error over pixels (the "L2" of the StyleGAN
  inversion literature and of the only public re-implementation, mean_batch ||x - x'||^2); the
  unsquared norm would weight large images differently and its gradient is undefined at 0.
- Eq. 6, L_G = E log(1 - D(x')), minimised by M: the saturating minimax loss, log(1 - sigmoid(l))
  = -softplus(l) for D's logit l (``saturating_generator_loss``).
- Eq. 7's penalty, lambda E[(||grad_{x'} D(x')||_2 - 1)^2]: taken at the reconstructions x', as
  printed (``fake_gradient_penalty``), not at interpolates as WGAN-GP does.
- Eq. 8, L_id = 1 - f(x).f(x') / ([f(x).f(x)][f(x').f(x')]): the printed denominator lacks the
  square roots of a cosine; the text says "similarity of the identity features" (ArcFace's
  cosine), so 1 - cos(f(x), f(x')).
- Eq. 9, L_div = d(f, f_1) / d(x', x'_1) with l1 distances: means of absolute differences over all
  elements of the batch (MSGAN's form, the paper's reference [34]); minimising it spreads the
  images of nearby features apart.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def reconstruction_loss(real: Tensor, reconstruction: Tensor) -> Tensor:
    """Eq. 4 as the mean squared error over all pixels of the batch."""
    return F.mse_loss(reconstruction, real)


def saturating_generator_loss(logits_on_fake: Tensor) -> Tensor:
    """Eq. 6: E log(1 - sigmoid(D(x'))) = -E softplus(D(x')), minimised by the mapping network."""
    return -F.softplus(logits_on_fake).mean()


def fake_gradient_penalty(discriminator: torch.nn.Module, fake: Tensor) -> Tensor:
    """Eq. 7's penalty: E[(||grad D(x')||_2 - 1)^2] at the (detached) reconstructions x', one
    norm per image over all its pixels; the graph is kept so its backward reaches D's weights."""
    fake = fake.detach().requires_grad_(True)
    (gradients,) = torch.autograd.grad(discriminator(fake).sum(), fake, create_graph=True)
    return ((gradients.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def identity_loss(embedding_real: Tensor, embedding_reconstruction: Tensor) -> Tensor:
    """Eq. 8 read as 1 - cosine similarity of the identity embeddings, averaged over the batch."""
    return (1.0 - F.cosine_similarity(embedding_real, embedding_reconstruction, dim=1)).mean()


def diversity_loss(features: Tensor, noisy_features: Tensor, image: Tensor, noisy_image: Tensor, eps: float = 1e-5) -> Tensor:
    """Eq. 9: mean|f - f_1| / mean|x' - x'_1| (``eps`` keeps identical images finite)."""
    return torch.mean(torch.abs(features - noisy_features)) / (torch.mean(torch.abs(image - noisy_image)) + eps)
