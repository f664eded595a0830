"""Base LightningModule of every system: manual optimisation driven by the schedule engine.

A system (BicycleGAN, CycleGAN, ...) declares its nets, one optimiser per named group, its
forward results and its loss terms; this class turns the configured schedule into optimiser
steps, owns the iteration counter and the per-iteration random draws, and implements the
fast-path switches (channels_last, torch.compile) and the learning-rate policy.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from bicyclegan_pl.distributed import ManualSyncDDPStrategy, all_ranks_true, average_gradients, is_distributed
from bicyclegan_pl.schedule import ForwardResults, ResultSpec, ScheduleEngine, SkipMonitor, parse_schedule


def iteration_seed(seed: int, rank: int, iteration: int) -> int:
    """A well-mixed 63-bit seed for one iteration of one rank.

    Every random draw of an iteration (latent codes, dropout masks) is a pure function of
    (seed, rank, iteration): resuming reproduces an uninterrupted run, and ranks differ.
    """
    return int(np.random.SeedSequence([seed, rank, iteration]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


@contextmanager
def iteration_rng(seed: int, rank: int, iteration: int, device: torch.device) -> Iterator[torch.Generator]:
    """Seed the global RNGs (dropout) for one iteration and restore them afterwards.

    Yields a CPU generator for the explicit draws (z, eps), so they do not depend on how many
    numbers dropout consumed and are the same on CPU and GPU.
    """
    value = iteration_seed(seed, rank, iteration)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(value)
        yield torch.Generator().manual_seed(value ^ 0x5DEECE66D)


def linear_decay_lambda(n_epochs: int, n_epochs_decay: int, epoch_count: int = 1) -> Callable[[int], float]:
    """junyanz 'linear' policy: constant for n_epochs, then linearly to ~0 over n_epochs_decay."""

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1)

    return factor


def stages_lambda(stages: Sequence[Sequence[float]]) -> Callable[[int], float]:
    """Piecewise-constant factors: ``[[epochs, factor], ...]``, the last factor held afterwards
    (CLIPTraVeLGAN's notebook: 2e-4 for 7 epochs, 1e-4 for 5, 3e-5 for 2 = factors 1, 0.5, 0.15)."""
    if not stages or any(len(stage) != 2 or stage[0] < 1 for stage in stages):
        raise ValueError(f"model.lr_scheduler.stages must be a list of [epochs >= 1, factor] pairs, got {stages!r}")
    boundaries = np.cumsum([int(epochs) for epochs, _ in stages])
    factors = [float(factor) for _, factor in stages]

    def factor(epoch: int) -> float:
        return factors[min(int(np.searchsorted(boundaries, epoch, side="right")), len(factors) - 1)]

    return factor


class ScheduledTranslationModule(L.LightningModule):
    """Manual optimisation through :mod:`bicyclegan_pl.schedule`; subclasses define the system."""

    #: terms shown in the progress bar (the rest go to the loggers only)
    progress_bar_terms: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        schedule: Sequence[Mapping[str, Any]],
        loss_weights: Mapping[str, float],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr: Mapping[str, float] | None = None,
        lr_scheduler: Mapping[str, Any] | None = None,
        seed: int = 0,
        on_nonfinite: str = "raise",
        max_consecutive_skips: int | None = 100,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        channels_last: bool = False,
        compile: bool = False,
        compile_backend: str = "inductor",
    ):
        super().__init__()
        self.automatic_optimization = False
        self._schedule_config = [dict(phase) for phase in schedule]
        self.loss_weights = {k: float(v) for k, v in loss_weights.items()}
        self.optimizer_factory = optimizer
        self.learning_rates = dict(lr or {})
        self.lr_scheduler_config = dict(lr_scheduler) if lr_scheduler else None
        self.seed = int(seed)
        self.on_nonfinite = on_nonfinite
        #: under on_nonfinite=skip: warns once per term and epoch, summarises each epoch, stops a run that never recovers
        self.skip_monitor = SkipMonitor(max_consecutive_skips)
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.use_channels_last = channels_last
        self.use_compile = compile
        self.compile_backend = compile_backend
        self.iteration = 0
        #: the resolved run config, stored in checkpoints so evaluation can rebuild the system
        self.run_config: dict[str, Any] | None = None
        self._engine: ScheduleEngine | None = None

    # ---- what a system defines -------------------------------------------------------------
    def optimizer_groups(self) -> dict[str, nn.Module]:
        """Ordered name -> module whose parameters one optimiser owns. The order is fixed."""
        raise NotImplementedError

    def forward_results(self) -> dict[str, ResultSpec]:
        raise NotImplementedError

    def loss_terms(self) -> dict[str, Callable[[ForwardResults], Tensor]]:
        raise NotImplementedError

    def sample_outputs(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator) -> Tensor:
        """(S, N, C, H, W) generated outputs for the inputs of ``batch``, for evaluation metrics;
        random draws come from ``generator``. Deterministic systems repeat their one output."""
        raise NotImplementedError

    def prepare_iteration(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Any]:
        """Split the batch and make every random draw of the iteration; returns the inputs."""
        raise NotImplementedError

    # ---- engine ------------------------------------------------------------------------------
    @property
    def engine(self) -> ScheduleEngine:
        if self._engine is None:
            phases = parse_schedule(
                self._schedule_config, list(self.optimizer_groups()), list(self.loss_terms()), self.loss_weights
            )
            self._engine = ScheduleEngine(phases, self.loss_weights, self.on_nonfinite)
        return self._engine

    def validate_schedule(self) -> None:
        """Parse the schedule now, so a config mistake fails before any data is loaded."""
        _ = self.engine

    def compute_loss_term(self, name: str, results: ForwardResults) -> Tensor:
        return self._loss_terms[name](results)

    def parameters_of(self, optimizer_names: Sequence[str]) -> list[nn.Parameter]:
        groups = self.optimizer_groups()
        return [p for name in optimizer_names for p in groups[name].parameters() if p.requires_grad]

    def _optimizer(self, name: str):
        return self.optimizers()[self._optimizer_index[name]]

    def zero_grad_of(self, optimizer_name: str) -> None:
        self._optimizer(optimizer_name).zero_grad(set_to_none=True)

    def backward_into(self, loss: Tensor, parameters: list[nn.Parameter]) -> None:
        # retain_graph: later groups may reuse cached results; graphs are freed when the
        # results are invalidated by a step or dropped at the end of the iteration.
        self.manual_backward(loss, inputs=parameters, retain_graph=True)

    def step_optimizer(self, optimizer_name: str) -> None:
        optimizer = self._optimizer(optimizer_name)
        average_gradients(self.optimizer_groups()[optimizer_name].parameters())
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )
        optimizer.step()

    def all_ranks_agree(self, flag: bool) -> bool:
        return all_ranks_true(flag, self.device)

    # ---- Lightning hooks -------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self._loss_terms = self.loss_terms()
        self._result_specs = self.forward_results()
        self._optimizer_index = {name: i for i, name in enumerate(self.optimizer_groups())}
        self.validate_schedule()
        if self.use_channels_last:
            self.to(memory_format=torch.channels_last)
        if self.use_compile:
            # compile the sub-networks' forwards only (Module.compile keeps state_dict keys, so
            # checkpoints stay interchangeable with eager runs); never the whole module.
            for module in self.optimizer_groups().values():
                module.compile(backend=self.compile_backend)

    def on_fit_start(self) -> None:
        if is_distributed() and not isinstance(self.trainer.strategy, ManualSyncDDPStrategy):
            raise RuntimeError(
                f"{type(self).__name__} runs several optimisers with partial backward passes, which Lightning's "
                "DistributedDataParallel wrapper cannot synchronise. Use the framework's strategy: "
                "trainer=ddp (strategy: ddp_manual_sync)."
            )

    def configure_optimizers(self):
        optimizers, schedulers = [], []
        for name, module in self.optimizer_groups().items():
            kwargs = {"lr": self.learning_rates[name]} if name in self.learning_rates else {}
            # the group name makes LearningRateMonitor log lr-Adam/G, lr-Adam/E, ...
            optimizer = self.optimizer_factory([{"params": list(module.parameters()), "name": name}], **kwargs)
            optimizers.append(optimizer)
            if self.lr_scheduler_config:
                schedulers.append(self._make_scheduler(optimizer))
        return optimizers, schedulers

    def _make_scheduler(self, optimizer: torch.optim.Optimizer):
        config = dict(self.lr_scheduler_config)
        policy = config.pop("policy", "linear")
        if policy == "linear":
            return torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay_lambda(**config))
        if policy == "stages":
            return torch.optim.lr_scheduler.LambdaLR(optimizer, stages_lambda(**config))
        if policy == "step":
            return torch.optim.lr_scheduler.StepLR(optimizer, **config)
        if policy == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **config)
        raise ValueError(f"unknown model.lr_scheduler.policy {policy!r}; choose linear, stages, step or cosine")

    def to_memory_format(self, tensor: Tensor) -> Tensor:
        if self.use_channels_last and tensor.dim() == 4:
            return tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        with iteration_rng(self.seed, self.global_rank, self.iteration, self.device) as generator:
            inputs = self.prepare_iteration(batch, generator)
            results = ForwardResults(self._result_specs, inputs)
            values = self.engine.run_iteration(self, results, self.iteration)
        batch_size = batch["A"].shape[0]
        if self.on_nonfinite == "skip":
            skipped = self.engine.last_skipped
            for message in self.skip_monitor.observe(self.current_epoch, self.iteration, skipped):
                if self.global_rank == 0:  # every rank skips alike (all_ranks_agree): say it once
                    warnings.warn(message, stacklevel=1)
            counts = self.skip_monitor.step_metrics([phase.name for phase in self.engine.phases], skipped)
            self.log_dict(
                {f"train/{name}": value for name, value in counts.items()},
                on_step=False, on_epoch=True, reduce_fx="sum", batch_size=batch_size,
            )
            if self.trainer.is_last_batch and (summary := self.skip_monitor.epoch_summary()):
                self.print(summary)
        self.iteration += 1
        logs = {f"train/{name}": value.float() for name, value in values.items()}
        self.log_dict(logs, on_step=True, on_epoch=True, batch_size=batch_size)
        for name in self.progress_bar_terms:
            if name in values:
                self.log(name, values[name].float(), prog_bar=True, logger=False, batch_size=batch_size)

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["iteration"] = self.iteration
        if self.run_config is not None:
            checkpoint["run_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.iteration = int(checkpoint.get("iteration", 0))
