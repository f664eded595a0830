"""Searching the latent code of a trained translator for outputs that score high (seed 000, "CLIP
Guided BicycleGAN"): rank many random z, or ascend the score by gradient steps on z.

Everything here works for one input image at a time, through ``generate(z) -> images`` (that
input translated with each code of ``z``), and for any ``Scorer`` (images -> (N, P) scores,
one column per prompt). Random codes are drawn on the CPU from a seeded ``torch.Generator``,
so results do not depend on the device.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from bicyclegan_pl.clip.scoring import Scorer

Generate = Callable[[Tensor], Tensor]


@dataclass
class GuidanceResult:
    """Per prompt, the ``k`` best codes found, best first."""

    z: Tensor  # (P, k, nz)
    scores: Tensor  # (P, k): the scorer's value at z
    images: Tensor  # (P, k, C, H, W)
    trajectories: Tensor | None = None  # (P, steps + 1, K): score of every start after each step (optimize)
    steps_run: list[int] | None = None  # per prompt (fewer than asked when stopped early)


def _no_progress(count: int = 1) -> None:
    pass


@torch.no_grad()
def _images_at(generate: Generate, z: Tensor) -> Tensor:
    """(P, k, nz) -> (P, k, C, H, W)."""
    images = generate(z.flatten(0, 1))
    return images.unflatten(0, z.shape[:2])


@torch.no_grad()
def rank(
    generate: Generate,
    scorer: Scorer,
    nz: int,
    num_samples: int = 256,
    chunk_size: int = 32,
    top_k: int = 4,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] = _no_progress,
) -> GuidanceResult:
    """Generate ``num_samples`` outputs with z ~ N(0, I), ``chunk_size`` at a time (only the scores
    are kept), and return the ``top_k`` codes per prompt."""
    if num_samples < 1 or chunk_size < 1 or top_k < 1:
        raise ValueError("num_samples, chunk_size and top_k must be at least 1")
    codes = torch.randn(num_samples, nz, generator=generator)
    scores = []
    for start in range(0, num_samples, chunk_size):
        chunk = codes[start : start + chunk_size].to(device)
        scores.append(scorer(generate(chunk)).float().cpu())
        progress(len(chunk))
    scores_by_prompt = torch.cat(scores).T  # (P, num_samples)
    best_scores, best = scores_by_prompt.topk(min(top_k, num_samples), dim=1)
    z = codes[best].to(device)
    return GuidanceResult(z=z, scores=best_scores, images=_images_at(generate, z))


def optimize(
    generate: Generate,
    scorer: Scorer,
    starts: Tensor,
    steps: int = 100,
    lr: float = 0.1,
    prior_weight: float = 0.0,
    early_stop_patience: int | None = None,
    early_stop_min_delta: float = 1e-4,
    top_k: int | None = None,
    progress: Callable[[int], None] = _no_progress,
) -> GuidanceResult:
    """Gradient ascent on z for each prompt, all starts of a prompt in one batch.

    starts: (K, nz), shared by every prompt, or (P, K, nz). The objective of a start is its score
    minus ``prior_weight`` * mean(z^2) (the N(0, I) log-density up to a constant, per dimension:
    it keeps z where the generator was trained). Adam with ``lr`` (seed 000: 0.1). Every start
    keeps the best code it visited; the run stops early when the best objective over all starts
    has not improved by ``early_stop_min_delta`` for ``early_stop_patience`` steps. Returns the
    ``top_k`` starts (default all) per prompt, best first, and every start's score trajectory.
    """
    num_prompts = len(scorer.names)
    starts = starts.unsqueeze(0).expand(num_prompts, -1, -1) if starts.dim() == 2 else starts
    if starts.shape[0] != num_prompts:
        raise ValueError(f"starts has {starts.shape[0]} prompt rows, the scorer {num_prompts}")
    num_starts = starts.shape[1]
    top_k = num_starts if top_k is None else min(top_k, num_starts)
    chosen_z, chosen_scores, trajectories, steps_run = [], [], [], []
    for prompt in range(num_prompts):
        z = starts[prompt].detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        best_objective = torch.full((num_starts,), -torch.inf, device=z.device)
        best_z, best_score = z.detach().clone(), torch.zeros(num_starts, device=z.device)
        trajectory, record, since_record = [], -float("inf"), 0
        for step in range(steps + 1):  # the last pass only scores the final codes
            score = scorer(generate(z))[:, prompt]
            objective = score - prior_weight * z.pow(2).mean(-1)
            with torch.no_grad():  # bookkeeping in float32, whatever precision the nets run in
                score_value, objective_value = score.detach().float(), objective.detach().float()
                improved = objective_value > best_objective
                best_objective = torch.where(improved, objective_value, best_objective)
                best_z[improved], best_score[improved] = z[improved], score_value[improved]
                trajectory.append(score_value.cpu())
                current = float(best_objective.max())
                record, since_record = (current, 0) if current > record + early_stop_min_delta else (record, since_record + 1)
            if step == steps or (early_stop_patience is not None and since_record >= early_stop_patience):
                break
            optimizer.zero_grad(set_to_none=True)
            (-objective.sum()).backward()  # starts are independent: the sum gives each its own gradient
            optimizer.step()
            progress(num_starts)
        order = best_objective.argsort(descending=True)[:top_k]
        chosen_z.append(best_z[order])
        chosen_scores.append(best_score[order].cpu())
        trajectories.append(torch.stack(trajectory))
        steps_run.append(len(trajectory) - 1)
    z = torch.stack(chosen_z)
    length = max(len(t) for t in trajectories)  # early-stopped prompts: pad with their last row
    padded = [torch.cat([t, t[-1:].expand(length - len(t), -1)]) for t in trajectories]
    return GuidanceResult(
        z=z, scores=torch.stack(chosen_scores), images=_images_at(generate, z),
        trajectories=torch.stack(padded), steps_run=steps_run,
    )


def rank_then_optimize(
    generate: Generate,
    scorer: Scorer,
    nz: int,
    num_samples: int = 256,
    chunk_size: int = 32,
    num_starts: int = 8,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] = _no_progress,
    **optimize_options,
) -> GuidanceResult:
    """``rank`` picks the ``num_starts`` best of ``num_samples`` random codes per prompt; ``optimize``
    starts from them."""
    ranked = rank(generate, scorer, nz, num_samples, chunk_size, num_starts, generator, device, progress)
    return optimize(generate, scorer, ranked.z, progress=progress, **optimize_options)
