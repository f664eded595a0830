"""Evaluation metrics: FID/KID/IS (torchmetrics on shared features), LPIPS diversity, and the
exact ground-truth metrics of the synthetic data, behind one ``EvaluationSuite``."""
from bicyclegan_pl.metrics.distribution import DistributionMetrics
from bicyclegan_pl.metrics.diversity import LPIPSDiversity, load_lpips
from bicyclegan_pl.metrics.features import ConvFeatures, InceptionFeatures, RandomInceptionFeatures
from bicyclegan_pl.metrics.ground_truth import EncodedAccuracy, MaskIoU, ModeCoverage, object_mask
from bicyclegan_pl.metrics.suite import EvaluationSuite, real_stats_key
from bicyclegan_pl.weights import WeightsNotFoundError, resolve_weights

__all__ = [
    "ConvFeatures",
    "DistributionMetrics",
    "EncodedAccuracy",
    "EvaluationSuite",
    "InceptionFeatures",
    "LPIPSDiversity",
    "MaskIoU",
    "ModeCoverage",
    "RandomInceptionFeatures",
    "WeightsNotFoundError",
    "load_lpips",
    "object_mask",
    "real_stats_key",
    "resolve_weights",
]
