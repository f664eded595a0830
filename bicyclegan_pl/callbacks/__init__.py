"""Callbacks: sample grids (and, later, metrics)."""
from bicyclegan_pl.callbacks.sample_grid import SampleGridCallback, render_grid

__all__ = ["SampleGridCallback", "render_grid"]
