"""The CLIP library: load CLIP with transformers, preprocess generated images for it
differentiably, score them against prompts, and the frozen CLIP Siamese space (CLIPTraVeLGAN).

Its applications sit above the models: the latent search of seed 000's CLIP guidance is
``bicyclegan_pl.guidance`` (run by ``python -m bicyclegan_pl.guide``)."""
from bicyclegan_pl.clip.loading import ClipModel, ClipNotFoundError, load_clip
from bicyclegan_pl.clip.preprocess import ClipPreprocess
from bicyclegan_pl.clip.scoring import ClipScorer, PromptError, Scorer

__all__ = [
    "ClipModel",
    "ClipNotFoundError",
    "ClipPreprocess",
    "ClipScorer",
    "PromptError",
    "Scorer",
    "load_clip",
]
