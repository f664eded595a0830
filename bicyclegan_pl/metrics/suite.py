"""All evaluation metrics of a translation model behind one object, shared by the training
callback and ``python -m bicyclegan_pl.evaluate``.

Per batch it takes the real targets and S generated samples per input, (S, N, C, H, W), and
feeds: FID/KID (real targets vs the first ``fid_samples_per_input`` samples), IS (those samples),
LPIPS diversity (all S samples of the first ``diversity_inputs`` inputs) and, for the synthetic
data (batches with a "mask" and a known palette), mode coverage, off-palette samples and mask IoU
(all samples) and, given the encoded reconstructions G(A, E(B)), the encoded accuracy.
Every metric is a torchmetrics ``Metric``, so states reduce across DDP ranks at ``compute()``.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from bicyclegan_pl.metrics.distribution import (
    DistributionMetrics,
    collapse_list_state,
    load_real_state_file,
    save_real_state,
)
from bicyclegan_pl.metrics.diversity import LPIPSDiversity
from bicyclegan_pl.metrics.features import FeatureExtractor
from bicyclegan_pl.metrics.ground_truth import ColourKept, EncodedAccuracy, MaskIoU, ModeCoverage
from bicyclegan_pl.weights import WeightsNotFoundError

# keys of a data config that change how data is loaded, not which images are loaded
_LOADER_KEYS = {"batch_size", "num_workers", "_target_", "scan", "log_dir", "cache_dir"}


def real_stats_key(
    data_config: Mapping[str, Any], split: str, num_items: int, domain: str = "B"
) -> tuple[str, dict[str, Any]]:
    """A short hash naming the real images (the ``domain`` side) of a dataset split at its
    resolution, and its description."""
    description = {
        "data": {k: v for k, v in sorted(data_config.items()) if k not in _LOADER_KEYS},
        "dataset": str(data_config.get("_target_", "")),
        "split": split,
        "domain": domain,
        "num_items": int(num_items),
    }
    digest = hashlib.sha1(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return digest, description


class EvaluationSuite(nn.Module):
    def __init__(
        self,
        feature_extractor: Callable[[], FeatureExtractor] | None = None,
        lpips: Callable[[], nn.Module] | None = None,
        fid: bool = True,
        kid: bool = True,
        inception_score: bool = True,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        diversity_inputs: int = 100,
        samples_per_input: int = 20,
        fid_samples_per_input: int = 1,
        ground_truth: bool = True,
        cache_dir: str | None = None,
        on_missing_weights: str = "error",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if on_missing_weights not in ("error", "skip"):
            raise ValueError(f"on_missing_weights must be 'error' or 'skip', got {on_missing_weights!r}")
        if samples_per_input < 1 or fid_samples_per_input < 1:
            raise ValueError("samples_per_input and fid_samples_per_input must be >= 1")
        self.on_missing_weights = on_missing_weights
        self.skipped: dict[str, str] = {}
        self.samples_per_input = samples_per_input
        self.fid_samples_per_input = fid_samples_per_input
        self.diversity_inputs = diversity_inputs
        self.use_ground_truth = ground_truth
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.seed = seed

        wants_distribution = fid or kid or inception_score
        self.features = self._build(feature_extractor, "fid/kid/is") if wants_distribution else None
        self.distribution: DistributionMetrics | None = None
        if self.features is not None:
            self.distribution = DistributionMetrics(
                self.features.num_features, self.features.num_logits, fid=fid, kid=kid,
                inception_score=inception_score, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                is_splits=is_splits, seed=seed,
            )
        lpips_network = self._build(lpips, "lpips_diversity") if diversity_inputs > 0 else None
        self.diversity = LPIPSDiversity(lpips_network) if lpips_network is not None and samples_per_input >= 2 else None
        self.mode_coverage: ModeCoverage | None = None
        self.mask_iou: MaskIoU | None = None
        self.encoded_accuracy: EncodedAccuracy | None = None
        self.shape_kept: MaskIoU | None = None  # unpaired synthetic data: the input's shape, and colour
        self.colour_kept: ColourKept | None = None
        self.has_real = False
        self.real_key = "B"  # the batch key of the real images (prepare(real_key=...))
        self._cache_path: Path | None = None
        self._cache_description: dict[str, Any] = {}
        self._diversity_quota = 0
        self._diversity_seen = 0
        # follows .to(device), so metrics created later in prepare() land on the same device
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    def _build(self, factory: Callable[[], Any] | None, what: str) -> Any:
        if factory is None:
            return None
        try:
            return factory()
        except WeightsNotFoundError as error:
            if self.on_missing_weights == "error":
                raise
            rank_zero_warn(f"{what} is skipped: {error}")
            self.skipped[what] = str(error).splitlines()[0]
            return None

    def train(self, mode: bool = True) -> "EvaluationSuite":
        return super().train(False)

    # ---- setup -------------------------------------------------------------------------------
    def prepare(
        self,
        palette: Tensor | None = None,
        data_config: Mapping[str, Any] | None = None,
        split: str = "val",
        num_items: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        real_key: str = "B",
        encoded: bool = False,
        source_palette: Tensor | None = None,
    ) -> None:
        """Before the first update: ground truth (synthetic data) and the real-statistics cache.

        ``real_key``: the batch key of the real images the outputs are compared with ("A" for
        a B -> A direction). ``encoded``: ``update`` will get the encoded reconstructions (a system
        with an encoder), measured against the ground truth. ``source_palette``: the colours of
        data whose inputs come with their mask and colour (the synthetic unpaired set): what the
        translations keep of their inputs is measured. Under DDP, cached real statistics are
        shared out so that the reduction restores them."""
        self.real_key = real_key
        if source_palette is not None and self.use_ground_truth and self.shape_kept is None:
            self.shape_kept = MaskIoU(source_palette).to(self._device_anchor.device)
            self.colour_kept = ColourKept(source_palette).to(self._device_anchor.device)
        if palette is not None and self.use_ground_truth and self.mode_coverage is None:
            self.mode_coverage = ModeCoverage(palette).to(self._device_anchor.device)
            self.mask_iou = MaskIoU(palette).to(self._device_anchor.device)
            if encoded:
                self.encoded_accuracy = EncodedAccuracy(palette).to(self._device_anchor.device)
        self._diversity_quota = math.ceil(self.diversity_inputs / world_size)
        if self.distribution is None or self.has_real:
            return
        if self.cache_dir is not None and data_config is not None and num_items is not None:
            key, description = real_stats_key(data_config, split, num_items, real_key)
            self._cache_path = self.cache_dir / self.features.name / f"{key}.pt"
            self._cache_description = description
            state = load_real_state_file(self._cache_path)
            if state is not None and self.distribution.load_real_state(state, rank, world_size):
                self.has_real = True

    @property
    def wants_reconstructions(self) -> bool:
        """Whether ``update`` needs the encoded reconstructions (``prepare(encoded=True)`` on data
        with ground truth)."""
        return self.encoded_accuracy is not None

    @property
    def samples_needed(self) -> int:
        """How many samples per input the next batch needs."""
        needs_all = self.mode_coverage is not None or (
            self.diversity is not None and self._diversity_seen < self._diversity_quota
        )
        return max(self.samples_per_input if needs_all else 1, self.fid_samples_per_input)

    # ---- accumulation ------------------------------------------------------------------------
    @torch.no_grad()
    def update(
        self, batch: Mapping[str, Any], samples: Tensor, real_key: str | None = None, reconstructions: Tensor | None = None
    ) -> None:
        """samples: (S, N, C, H, W), S >= samples_needed, in [-1, 1]; batch[real_key] (default: the
        one given to ``prepare``): (N, C, H, W); reconstructions: (N, C, H, W), G(A, E(B)) of a
        system with an encoder (``prepare(encoded=True)``)."""
        real_key = real_key or self.real_key
        if self.distribution is not None:
            if not self.has_real:
                pool, logits = self.features(batch[real_key].to(samples.device))
                self.distribution.update(pool, logits, real=True)
            pool, logits = self.features(samples[: self.fid_samples_per_input].flatten(0, 1))
            self.distribution.update(pool, logits, real=False)
        if self.diversity is not None and self._diversity_seen < self._diversity_quota:
            take = min(samples.shape[1], self._diversity_quota - self._diversity_seen)
            self.diversity.update(samples[:, :take])
            self._diversity_seen += take
        if self.mode_coverage is not None and "mask" in batch:
            masks = batch["mask"].to(samples.device)
            self.mode_coverage.update(samples, masks)
            self.mask_iou.update(samples.flatten(0, 1), masks.repeat(samples.shape[0], 1, 1, 1))
            if self.encoded_accuracy is not None:
                if reconstructions is None:
                    raise ValueError("prepare(encoded=True) needs update(..., reconstructions=...)")
                self.encoded_accuracy.update(reconstructions.to(samples.device), masks, batch["appearance"])
        source = "A" if real_key == "B" else "B"  # the domain the outputs were translated from
        if self.shape_kept is not None and f"mask_{source}" in batch:
            outputs, masks = samples[0], batch[f"mask_{source}"].to(samples.device)
            self.shape_kept.update(outputs, masks)
            self.colour_kept.update(outputs, masks, batch[f"colour_{source}"])

    # ---- results -----------------------------------------------------------------------------
    def compute(self, rank: int = 0) -> dict[str, float]:
        """All metrics (a collective under DDP: call on every rank). Caches real statistics."""
        results: dict[str, float] = {}
        if self.distribution is not None:
            suffix = self.features.metric_suffix
            results.update({f"{name}{suffix}": value for name, value in self.distribution.compute().items()})
            if not self.has_real:
                state = self.distribution.real_state()
                if rank == 0 and self._cache_path is not None:
                    save_real_state(state, self._cache_path, self._cache_description)
                self.has_real = True
        # the conditions below are the same on every rank, so no rank skips a collective
        if self.diversity is not None and self._diversity_quota > 0:
            collapse_list_state(self.diversity, "per_input", 1)
            mean, stderr = self.diversity.compute()
            results["lpips_diversity"], results["lpips_diversity_stderr"] = float(mean), float(stderr)
        if self.mode_coverage is not None:
            coverage, kl, off_palette = self.mode_coverage.compute()
            results["mode_coverage"], results["mode_kl"] = float(coverage), float(kl)
            results["off_palette"] = float(off_palette)
            results["mask_iou"] = float(self.mask_iou.compute())
            if self.encoded_accuracy is not None:
                results["encoded_accuracy"] = float(self.encoded_accuracy.compute())
        if self.shape_kept is not None:
            results["shape_iou"], results["colour_kept"] = float(self.shape_kept.compute()), float(self.colour_kept.compute())
        return results

    def metric_names(self) -> list[str]:
        """The keys compute() returns. The ground-truth ones depend on the data: after ``prepare``
        exactly those of its data (the paired set's with a palette, the unpaired set's with a
        source palette); before it, every one it may return (to check a checkpoint's monitor)."""
        names: list[str] = []
        if self.distribution is not None:
            suffix = self.features.metric_suffix
            names += [f"fid{suffix}"] if self.distribution.fid is not None else []
            names += [f"kid_mean{suffix}", f"kid_std{suffix}"] if self.distribution.kid is not None else []
            names += [f"is_mean{suffix}", f"is_std{suffix}"] if self.distribution.inception_score is not None else []
        if self.diversity is not None and self.diversity_inputs > 0:
            names += ["lpips_diversity", "lpips_diversity_stderr"]
        if self.use_ground_truth:
            prepared = self.mode_coverage is not None or self.shape_kept is not None
            if self.mode_coverage is not None or not prepared:
                names += ["mode_coverage", "mode_kl", "off_palette", "mask_iou"]
                names += ["encoded_accuracy"] if self.encoded_accuracy is not None else []
            if self.shape_kept is not None or not prepared:
                names += ["shape_iou", "colour_kept"]
        return names

    def reset(self) -> None:
        """Forget generated samples; real statistics stay."""
        for metric in (
            self.distribution, self.diversity, self.mode_coverage, self.mask_iou, self.encoded_accuracy,
            self.shape_kept, self.colour_kept,
        ):
            if metric is not None:
                metric.reset()
        self._diversity_seen = 0

    def describe(self) -> dict[str, Any]:
        """What was measured and how, for metrics.json."""
        info: dict[str, Any] = {
            "samples_per_input": self.samples_per_input,
            "fid_samples_per_input": self.fid_samples_per_input,
            "diversity_inputs": self.diversity_inputs,
            "skipped": dict(self.skipped),
        }
        if self.features is not None:
            info["feature_extractor"] = self.features.name
            info["real_statistics_cache"] = str(self._cache_path) if self._cache_path else None
        return info
