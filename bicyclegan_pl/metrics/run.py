"""One evaluation pass of a model over a data loader, and the human-readable table of results."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from tqdm.auto import tqdm

from bicyclegan_pl.metrics.suite import EvaluationSuite

# metric -> (label, what it measures, better); std/stderr keys are shown next to their mean
DESCRIPTIONS = {
    "fid": ("FID", "Fréchet distance of Inception features, generated vs real", "lower"),
    "kid_mean": ("KID", "kernel (MMD) distance of Inception features", "lower"),
    "is_mean": ("IS", "Inception Score of the generated images", "higher"),
    "lpips_diversity": ("LPIPS diversity", "mean LPIPS between consecutive random-z samples", "higher"),
    "mode_coverage": ("mode coverage", "fraction of the K true appearances produced per input", "higher (1 = all)"),
    "mode_kl": ("mode KL", "KL divergence of the produced appearances from uniform, per input", "lower (0 = uniform)"),
    "off_palette": ("off-palette samples", "fraction of samples that show none of the K appearances (noise, wrong colour, coloured background)", "lower (0 = none)"),
    "encoded_accuracy": ("encoded accuracy", "fraction of inputs whose G(A, E(B)) shows the target's own appearance", "higher (1 = all)"),
    "mask_iou": ("mask IoU", "IoU of the generated object with the true object mask", "higher (1 = exact)"),
    "shape_iou": ("shape kept (IoU)", "IoU of the translated object with the input's object (synthetic unpaired data)", "higher (1 = same shape and place)"),
    "colour_kept": ("colour kept", "fraction of translations that keep the input's colour (synthetic unpaired data)", "higher (1 = all)"),
    "space_cosine": ("space cosine", "cos(S(x), S(G(x))) in the model's Siamese space, per distinct input", "higher = closer to the input"),
    "travel_cosine": (
        "TraVeL cosine", "cos of S(x_i) - S(x_j) and S(G(x_i)) - S(G(x_j)) over all pairs of distinct held-out inputs", "higher = more kept",
    ),
    "clip_space_cosine": (
        "CLIP-space cosine", "cos(C(x), C(G(x))) in the CLIP given by clip.model (the same space for every system)",
        "higher = closer to the input",
    ),
    "clip_travel_cosine": (
        "CLIP-space TraVeL cosine", "cos of C(x_i) - C(x_j) and C(G(x_i)) - C(G(x_j)) in the CLIP given by clip.model",
        "higher = more kept",
    ),
}
SPREAD = {"kid_mean": "kid_std", "is_mean": "is_std", "lpips_diversity": "lpips_diversity_stderr"}


@torch.no_grad()
def evaluate_model(
    model: Any,
    batches: Iterable[Mapping[str, Any]],
    suite: EvaluationSuite,
    generator: torch.Generator,
    max_inputs: int | None = None,
    total: int | None = None,
    outputs: Callable[[Mapping[str, Any]], torch.Tensor] | None = None,
    description: str = "evaluating",
) -> tuple[dict[str, float], int]:
    """Feed every batch (up to ``max_inputs`` inputs) and its generated samples to the suite.
    ``outputs(batch)`` (N, C, H, W), for a deterministic direction, replaces
    ``model.sample_outputs``. Returns the metrics and the number of inputs seen."""
    seen = 0
    progress = tqdm(batches, total=total, desc=description, unit="batch")
    for batch in progress:
        if max_inputs is not None:
            keep = max_inputs - seen
            if keep <= 0:
                break
            batch = {k: v[:keep] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        if outputs is None:
            samples = model.sample_outputs(batch, suite.samples_needed, generator)
        else:
            single = outputs(batch)
            samples = single.unsqueeze(0).expand(suite.samples_needed, *single.shape)
        reconstructions = model.reconstruct(batch) if suite.wants_reconstructions else None
        suite.update(batch, samples, reconstructions=reconstructions)
        seen += samples.shape[1]
    progress.close()
    return suite.compute(), seen


def _split_suffix(key: str) -> tuple[str, str]:
    for suffix in ("_randinit", "_conv"):
        if key.endswith(suffix):
            return key[: -len(suffix)], suffix
    return key, ""


def metrics_table(results: Mapping[str, float]) -> str:
    """Markdown: metric | value (± std or standard error) | better | what it measures."""
    lines = ["| metric | value | better | what it measures |", "|---|---|---|---|"]
    spreads = set()
    for key in results:
        direction, _, name = key.rpartition("/")
        base, suffix = _split_suffix(name)
        if base in SPREAD:
            spreads.add(f"{direction}/" * bool(direction) + f"{SPREAD[base]}{suffix}")
    for key, value in results.items():
        if key in spreads:
            continue
        direction, _, name = key.rpartition("/")  # "AtoB/fid": a two-way system's direction
        base, suffix = _split_suffix(name)
        label, meaning, better = DESCRIPTIONS.get(base, (base, "", ""))
        if suffix:
            label = f"{label} ({suffix[1:]} features)"
            meaning += f"; {suffix[1:]} features, not comparable with published numbers"
        if direction:
            label = f"{direction}: {label}"
        prefix = f"{direction}/" if direction else ""
        spread_key = f"{prefix}{SPREAD[base]}{suffix}" if base in SPREAD else None
        # significant digits, not decimals: KID is ~1e-3 and its spread can be ~1e-15
        shown = f"{value:.4g}" if spread_key is None or spread_key not in results else f"{value:.4g} ± {results[spread_key]:.2g}"
        lines.append(f"| {label} | {shown} | {better} | {meaning} |")
    return "\n".join(lines) + "\n"
