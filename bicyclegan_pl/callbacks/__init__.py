"""Callbacks: the resumable last checkpoint, sample grids and evaluation metrics."""
from bicyclegan_pl.callbacks.last_checkpoint import LastCheckpoint
from bicyclegan_pl.callbacks.metrics import MetricsCallback, MetricsConfigurationError
from bicyclegan_pl.callbacks.sample_grid import SampleGridCallback

__all__ = ["LastCheckpoint", "MetricsCallback", "MetricsConfigurationError", "SampleGridCallback"]
