"""Learning-rate policies, named in configs as partial factories (``model.lr_scheduler``).

``model.lr_scheduler`` is a Hydra ``_target_`` with ``_partial_: true``: instantiating the model
config turns it into a function of the optimiser, which the module calls once per optimiser
and steps once per epoch, or, with the extra key ``interval: step`` (Lightning's word), once after
each iteration in which that optimiser stepped, so the scheduler counts optimiser steps (its
state is in the checkpoints either way). Any ``torch.optim.lr_scheduler`` class works as it is,
for example

```yaml
lr_scheduler:
  _target_: torch.optim.lr_scheduler.ExponentialLR
  _partial_: true
  gamma: 0.5
```

This module adds the policies torch does not have: junyanz' ``linear`` decay and
CLIPTraVeLGAN's piecewise-constant ``stages``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from bicyclegan_pl.errors import UserError

#: what ``model.lr_scheduler`` becomes once instantiated: optimiser -> its scheduler
SchedulerFactory = Callable[[Optimizer], LRScheduler]
#: when the module steps the schedulers (``model.lr_scheduler.interval``): once per epoch (the
#: default), or after each iteration in which the scheduler's optimiser stepped
INTERVALS = ("epoch", "step")


class LRSchedulerError(UserError, ValueError):
    """``model.lr_scheduler`` cannot make a learning-rate scheduler; the message says why."""


def linear_decay(optimizer: Optimizer, n_epochs: int, n_epochs_decay: int, epoch_count: int = 1) -> LambdaLR:
    """junyanz 'linear' policy: constant for n_epochs, then linearly to ~0 over n_epochs_decay."""

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1)

    return LambdaLR(optimizer, factor)


def stages(optimizer: Optimizer, stages: Sequence[Sequence[float]]) -> LambdaLR:
    """Piecewise-constant factors: ``[[length, factor], ...]``, the last factor held afterwards; a
    length counts scheduler steps: epochs, or optimiser steps with ``interval: step``
    (CLIPTraVeLGAN's notebook: 2e-4 for 7 x 1,400 steps, 1e-4 for 5 x 1,400, 3e-5 for 2 x 1,400 =
    factors 1, 0.5, 0.15)."""
    if not stages or any(len(stage) != 2 or stage[0] < 1 for stage in stages):
        raise LRSchedulerError(f"model.lr_scheduler.stages must be a list of [length >= 1, factor] pairs, got {stages!r}")
    boundaries = np.cumsum([int(length) for length, _ in stages])
    factors = [float(factor) for _, factor in stages]

    def factor(epoch: int) -> float:
        return factors[min(int(np.searchsorted(boundaries, epoch, side="right")), len(factors) - 1)]

    return LambdaLR(optimizer, factor)


def check_factory(factory: object) -> SchedulerFactory | None:
    """``model.lr_scheduler`` as the module receives it: a factory, or None for a constant rate."""
    if factory is not None and not callable(factory):
        raise LRSchedulerError(
            "model.lr_scheduler must be null or a scheduler factory: a _target_ with _partial_: true, e.g. "
            "{_target_: bicyclegan_pl.runtime.lr_schedulers.linear_decay, _partial_: true, n_epochs: 50, "
            f"n_epochs_decay: 50}}; got {factory!r}"
        )
    return factory


def split_interval(factory: SchedulerFactory | None) -> tuple[SchedulerFactory | None, str]:
    """``model.lr_scheduler`` without its ``interval`` key, and that interval (``epoch`` when absent).

    ``interval`` says when the module steps the scheduler, not how the scheduler computes a rate,
    so it is taken out of the partial before the scheduler is built (no torch scheduler takes it).
    """
    interval = "epoch"
    if isinstance(factory, functools.partial) and "interval" in factory.keywords:
        keywords = dict(factory.keywords)
        interval = keywords.pop("interval")
        factory = functools.partial(factory.func, *factory.args, **keywords)
    if interval not in INTERVALS:
        raise LRSchedulerError(f"model.lr_scheduler.interval must be one of {', '.join(INTERVALS)}; got {interval!r}")
    return factory, interval


def make_scheduler(factory: SchedulerFactory, optimizer: Optimizer, name: str) -> LRScheduler:
    """``factory(optimizer)``, with errors that name ``model.lr_scheduler`` and the optimiser."""
    try:
        scheduler = factory(optimizer)
    except LRSchedulerError:
        raise
    except (TypeError, ValueError) as error:  # missing or bad arguments of the configured scheduler
        raise LRSchedulerError(
            f"model.lr_scheduler cannot make a scheduler for optimiser {name}: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(scheduler, LRScheduler):
        raise LRSchedulerError(
            f"model.lr_scheduler must make a torch.optim.lr_scheduler.LRScheduler from an optimiser; "
            f"for optimiser {name} it made {type(scheduler).__name__}"
        )
    if isinstance(scheduler, ReduceLROnPlateau):
        raise LRSchedulerError(
            "model.lr_scheduler: ReduceLROnPlateau needs a monitored metric, but schedulers step once per "
            "epoch (or optimiser step) without one; choose a scheduler that follows the epoch or step count"
        )
    return scheduler
