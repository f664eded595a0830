"""CLIP guidance of a trained translator (seed 000): load CLIP with transformers, preprocess
generated images for it differentiably, score them against prompts, and search the latent
code by ranking many samples or by gradient ascent on the score."""
from bicyclegan_pl.clip.guidance import GuidanceResult, optimize, rank, rank_then_optimize
from bicyclegan_pl.clip.loading import ClipModel, ClipNotFoundError, load_clip
from bicyclegan_pl.clip.preprocess import ClipPreprocess
from bicyclegan_pl.clip.scoring import ClipScorer, PromptError, Scorer

__all__ = [
    "ClipModel",
    "ClipNotFoundError",
    "ClipPreprocess",
    "ClipScorer",
    "GuidanceResult",
    "PromptError",
    "Scorer",
    "load_clip",
    "optimize",
    "rank",
    "rank_then_optimize",
]
