"""FID, KID and Inception Score: torchmetrics' implementations fed with precomputed features.

One feature extractor pass per batch serves all three metrics (the torchmetrics classes would
each run their own Inception), and the real-image statistics can be saved to and loaded from
disk. The statistics, the Fréchet distance (float64), the KID polynomial-kernel MMD and the IS
are torchmetrics' code; only the network call moved out.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.utilities import dim_zero_cat

CACHE_FORMAT = 1


class FeatureInput(nn.Identity):
    """Stands in for the network inside a torchmetrics metric: its 'images' are features."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """KID subsets and IS splits use torch.randperm: seed them so a result is reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def collapse_list_state(metric: Any, name: str, width: int, dtype: torch.dtype = torch.float64) -> None:
    """Make a list state exactly one (M, width) tensor, empty if the process saw nothing.

    torchmetrics gathers a list state element by element across ranks, so ranks holding
    different numbers of elements (uneven batches, real features loaded from the cache on
    one rank) would issue mismatched collectives. One tensor per rank, of any length, is safe."""
    values = getattr(metric, name)
    tensor = torch.cat([v.reshape(-1, width) for v in values]) if values else torch.zeros(0, width, dtype=dtype, device=metric.device)
    setattr(metric, name, [tensor])


class SubsetCappedKID(KernelInceptionDistance):
    """KID whose subset size is capped at the number of samples (validation sets are often
    smaller than the default 1000), instead of raising."""

    def compute(self) -> tuple[Tensor, Tensor]:
        available = min(dim_zero_cat(self.real_features).shape[0], dim_zero_cat(self.fake_features).shape[0])
        requested = self.subset_size
        self.subset_size = min(requested, available)
        try:
            return super().compute()
        finally:
            self.subset_size = requested


class SplitCappedInceptionScore(InceptionScore):
    """IS with at most one split per two samples; the std is 0 with a single split."""

    def compute(self) -> tuple[Tensor, Tensor]:
        requested = self.splits
        self.splits = max(1, min(requested, dim_zero_cat(self.features).shape[0] // 2))
        try:
            with warnings.catch_warnings():  # std of a single split: reported as 0 below
                warnings.filterwarnings("ignore", message=".*degrees of freedom.*")
                mean, std = super().compute()
        finally:
            self.splits = requested
        return mean, torch.nan_to_num(std, nan=0.0)


class DistributionMetrics(nn.Module):
    """FID and KID between real and generated features; IS of generated logits.

    ``update(pool, logits, real)``; ``compute()`` -> {"fid", "kid_mean", "kid_std", "is_mean",
    "is_std"} (the ones enabled). Real statistics survive ``reset()``.
    """

    def __init__(
        self,
        num_features: int,
        num_logits: int | None,
        fid: bool = True,
        kid: bool = True,
        inception_score: bool = True,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.fid = None
        self.kid = None
        self.inception_score = None
        if fid:
            self.fid = FrechetInceptionDistance(feature=FeatureInput(num_features), reset_real_features=False)
            self.fid.set_dtype(torch.float64)
        with warnings.catch_warnings():  # "will save all extracted features": known, and small here
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            if kid:
                self.kid = SubsetCappedKID(
                    feature=FeatureInput(num_features), subsets=kid_subsets, subset_size=kid_subset_size,
                    reset_real_features=False,
                )
            if inception_score and num_logits is not None:
                self.inception_score = SplitCappedInceptionScore(feature=FeatureInput(num_logits), splits=is_splits)

    @property
    def enabled(self) -> bool:
        return any(m is not None for m in (self.fid, self.kid, self.inception_score))

    @property
    def real_metrics(self) -> list[Any]:
        return [m for m in (self.fid, self.kid) if m is not None]

    def update(self, pool: Tensor, logits: Tensor | None, real: bool) -> None:
        pool = pool.double()
        for metric in self.real_metrics:
            metric.update(pool, real=real)
        if not real and self.inception_score is not None and logits is not None:
            self.inception_score.update(logits.double())

    def num_real(self) -> int:
        """Real samples held by this process."""
        if self.fid is not None:
            return int(self.fid.real_features_num_samples)
        if self.kid is not None:
            return sum(t.shape[0] for t in self.kid.real_features)
        return 0

    def compute(self) -> dict[str, float]:
        results: dict[str, float] = {}
        if self.fid is not None:
            results["fid"] = float(self.fid.compute())
        if self.kid is not None:
            collapse_list_state(self.kid, "real_features", self.kid.inception.num_features)
            collapse_list_state(self.kid, "fake_features", self.kid.inception.num_features)
        if self.inception_score is not None:
            collapse_list_state(self.inception_score, "features", self.inception_score.inception.num_features)
        with seeded(self.seed):
            if self.kid is not None:
                mean, std = self.kid.compute()
                results["kid_mean"], results["kid_std"] = float(mean), float(std)
            if self.inception_score is not None:
                mean, std = self.inception_score.compute()
                results["is_mean"], results["is_std"] = float(mean), float(std)
        return results

    def reset(self) -> None:
        for metric in (self.fid, self.kid, self.inception_score):
            if metric is not None:
                metric.reset()

    # ---- real-image statistics on disk -----------------------------------------------------
    def real_state(self) -> dict[str, Any]:
        """The real statistics of all processes (a collective under DDP: call on every rank)."""
        state: dict[str, Any] = {"format": CACHE_FORMAT}
        for name, metric in (("fid", self.fid), ("kid", self.kid)):
            if metric is None:
                continue
            with metric.sync_context():  # no-op outside DDP
                if name == "fid":
                    state["fid"] = {
                        "sum": metric.real_features_sum.detach().cpu().clone(),
                        "cov_sum": metric.real_features_cov_sum.detach().cpu().clone(),
                        "num_samples": int(metric.real_features_num_samples),
                    }
                else:
                    state["kid"] = dim_zero_cat(metric.real_features).detach().cpu().clone()
        return state

    def load_real_state(self, state: dict[str, Any], rank: int = 0, world_size: int = 1) -> bool:
        """Install cached real statistics; False (nothing changed) if they lack an enabled metric.
        Under DDP every rank calls this: FID sums go to rank 0 (they are summed across ranks),
        KID features are dealt out (they are concatenated)."""
        if state.get("format") != CACHE_FORMAT or (self.fid is not None and "fid" not in state) or (
            self.kid is not None and "kid" not in state
        ):
            return False
        if self.fid is not None:
            device = self.fid.device
            fid = state["fid"]
            scale = 1 if rank == 0 else 0
            self.fid.real_features_sum = fid["sum"].to(device, torch.float64) * scale
            self.fid.real_features_cov_sum = fid["cov_sum"].to(device, torch.float64) * scale
            self.fid.real_features_num_samples = torch.tensor(fid["num_samples"] * scale, device=device)
        if self.kid is not None:
            self.kid.real_features = [state["kid"][rank::world_size].to(self.kid.device)]
        return True


def save_real_state(state: dict[str, Any], path: Path, description: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save({**state, "description": description}, temporary)
    temporary.replace(path)  # atomic: an interrupted save never leaves a half-written cache


def load_real_state_file(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt cache is recomputed, never trusted
        return None


def pool_features(extractor: nn.Module, images: Tensor, batch_size: int = 16) -> Tensor:
    """The extractor's pool features of ``images`` (on the extractor's device), in batches."""
    device = next(extractor.parameters()).device
    return torch.cat([extractor(images[i : i + batch_size].to(device))[0] for i in range(0, len(images), batch_size)])


def feature_distances(real_features: Tensor, fake_features: Tensor, kid_subsets: int = 100, seed: int = 0) -> dict[str, float]:
    """FID and KID (subsets of all the fake samples) between two sets of pool features:
    {"fid", "kid_mean", "kid_std"}."""
    distribution = DistributionMetrics(
        real_features.shape[1], None, fid=True, kid=True, inception_score=False,
        kid_subsets=kid_subsets, kid_subset_size=min(len(fake_features), len(real_features)), seed=seed,
    ).to(real_features.device)
    distribution.update(real_features, None, real=True)
    distribution.update(fake_features, None, real=False)
    return distribution.compute()
