"""Base LightningModule of every system: manual optimisation driven by the schedule engine.

A system (BicycleGAN, CycleGAN, ...) declares its nets, one optimiser per named group, its
forward results and its loss terms; this class turns the configured schedule into optimiser
steps, owns the iteration counter and the per-iteration random draws, and implements the
fast-path switches (channels_last, torch.compile) and the learning-rate schedulers.

Gradient penalties are loss terms of the discriminator phases like any other (``d_vae_gp``,
``d_A_gp``, ...; weight 0: off and not computed); the helpers here give every system the same
kind switch (``gradient_penalty``: wgangp | r1), the same draws of the interpolation weights and
the same check that ``gan_mode=wgangp`` comes with its penalty.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from bicyclegan_pl.runtime.distributed import ManualSyncDDPStrategy, all_ranks_true, average_gradients, is_distributed
from bicyclegan_pl.runtime.lr_schedulers import SchedulerFactory, check_factory, make_scheduler, split_interval
from bicyclegan_pl.runtime.rng import iteration_rng
from bicyclegan_pl.losses import GRADIENT_PENALTIES, gradient_penalty
from bicyclegan_pl.runtime.schedule import (
    ForwardResults,
    ResultSpec,
    ScheduleEngine,
    ScheduleError,
    SkipMonitor,
    parse_schedule,
)


class ScheduledTranslationModule(L.LightningModule):
    """Manual optimisation through :mod:`bicyclegan_pl.runtime.schedule`; subclasses define the system."""

    #: terms shown in the progress bar (the rest go to the loggers only)
    progress_bar_terms: tuple[str, ...] = ()
    #: one output per input, no random code (CycleGAN, TraVeLGAN): ``evaluate`` skips LPIPS diversity
    deterministic: bool = False
    #: translates inside a Siamese space (TraVeLGAN, CLIPTraVeLGAN): ``evaluate`` then also measures
    #: semantic preservation through :meth:`semantic_embeddings`
    has_semantic_space: bool = False
    #: encodes targets into its latent code (BicycleGAN's E): the metrics then also judge
    #: :meth:`reconstruct`, G(A, E(B)), against the ground truth
    has_encoder: bool = False

    def __init__(
        self,
        *,
        schedule: Sequence[Mapping[str, Any]],
        loss_weights: Mapping[str, float],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr: Mapping[str, float] | None = None,
        lr_scheduler: SchedulerFactory | None = None,
        seed: int = 0,
        on_nonfinite: str = "raise",
        max_consecutive_skips: int | None = 100,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        channels_last: bool = False,
        compile: bool = False,
        compile_backend: str = "inductor",
        gradient_penalty: str = "wgangp",
    ):
        super().__init__()
        if gradient_penalty not in GRADIENT_PENALTIES:
            raise ScheduleError(
                f"model.gradient_penalty must be one of {', '.join(GRADIENT_PENALTIES)}, got {gradient_penalty!r}"
            )
        self.automatic_optimization = False
        self._schedule_config = [dict(phase) for phase in schedule]
        self.loss_weights = {k: float(v) for k, v in loss_weights.items()}
        self.optimizer_factory = optimizer
        self.learning_rates = dict(lr or {})
        #: optimiser -> its LR scheduler (``model.lr_scheduler``, a partial); None: constant. Stepped once per
        #: epoch, or (``interval: step``) after each iteration in which its optimiser stepped
        self.lr_scheduler_factory, self.lr_scheduler_interval = split_interval(check_factory(lr_scheduler))
        #: the optimisers that stepped in the current iteration (for ``interval: step`` schedulers)
        self._stepped_optimizers: set[str] = set()
        self.seed = int(seed)
        self.on_nonfinite = on_nonfinite
        #: under on_nonfinite=skip: warns once per term and epoch, summarises each epoch, stops a run that never recovers
        self.skip_monitor = SkipMonitor(max_consecutive_skips)
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.use_channels_last = channels_last
        self.use_compile = compile
        self.compile_backend = compile_backend
        #: the kind of the gradient-penalty terms (``*_gp``): wgangp (interpolates) or r1 (real images)
        self.gradient_penalty = gradient_penalty
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

    def prepare_iteration(self, batch: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Any]:
        """Split the batch and make every random draw of the iteration; returns the inputs."""
        raise NotImplementedError

    def batch_size_of(self, batch: Mapping[str, Any]) -> int:
        """The number of training examples in ``batch`` (what the logged means are weighted by)."""
        return int(batch["A"].shape[0])

    def on_iteration_end(self, stepped: set[str]) -> None:
        """Called after each training iteration with the optimisers that stepped in it (the GAN
        trainer updates its EMA generator after a G step)."""

    # ---- gradient penalties (loss terms ``*_gp`` of the discriminator phases) -------------------
    def check_gradient_penalties(self, gan_mode: str, penalties: Mapping[str, str]) -> None:
        """Refuse ``gan_mode=wgangp`` with a zero-weight penalty for an active discriminator term,
        and a penalty with ``compile`` (call it from ``__init__``).

        ``penalties`` maps each discriminator loss term to its penalty term (``d_vae`` -> ``d_vae_gp``).
        The Wasserstein critic loss alone is unbounded (the critic can grow without limit), so such
        a run would only diverge; the message names the keys to set. A penalty differentiates D's
        gradient (double backward), which compiled sub-networks do not support.
        """
        active = [gp for gp in penalties.values() if self.loss_weights.get(gp)]
        if active and self.use_compile:
            raise ScheduleError(
                f"the gradient penalties {', '.join(active)} need a double backward through the discriminator, "
                "which torch.compile does not support: set model.compile=false or "
                + " ".join(f"model.loss_weights.{gp}=0" for gp in active)
            )
        if gan_mode != "wgangp":
            return
        missing = [gp for term, gp in penalties.items() if self.loss_weights.get(term) and not self.loss_weights.get(gp)]
        if missing:
            keys = " ".join(f"model.loss_weights.{gp}=10" for gp in missing)
            raise ScheduleError(
                f"model.gan_mode=wgangp needs a gradient penalty on each critic, but {', '.join(missing)} "
                f"{'has' if len(missing) == 1 else 'have'} weight 0: set {keys} (the WGAN-GP paper's lambda; "
                "model.gradient_penalty=wgangp|r1 picks the kind) and keep the terms in the discriminator "
                "phase of model.schedule"
            )

    def gradient_penalty_draws(self, sizes: Mapping[str, int], generator: torch.Generator) -> dict[str, Tensor]:
        """The interpolation weights alpha ~ U[0, 1], one per sample, of each WGAN-GP term in ``sizes``
        (term -> batch size), as inputs ``alpha_<term>``; call it in :meth:`prepare_iteration` after
        the other draws. Only terms with a non-zero weight draw (and nothing with r1), so runs without
        a penalty keep their random streams."""
        if self.gradient_penalty != "wgangp":
            return {}
        return {
            f"alpha_{term}": torch.rand(size, generator=generator)
            for term, size in sizes.items()
            if self.loss_weights.get(term)
        }

    def gradient_penalty_term(
        self,
        term: str,
        discriminator: nn.Module,
        real: Tensor,
        fake: Callable[[], Tensor],
        results: ForwardResults,
    ) -> Tensor:
        """The value of penalty ``term`` of ``discriminator`` on the real and fake images of its
        discriminator loss term (``fake`` is only called for wgangp; r1 uses the real images only)."""
        if self.gradient_penalty == "r1":
            return gradient_penalty("r1", discriminator, real)
        alpha = results.inputs.get(f"alpha_{term}")
        if alpha is None:
            raise ScheduleError(f"{term} is in model.schedule but not in model.loss_weights: set model.loss_weights.{term}")
        return gradient_penalty("wgangp", discriminator, real, fake(), alpha)

    # ---- what entry points and callbacks ask of a system -------------------------------------
    # ``evaluate``, ``guide``, the sample-grid and the metrics callbacks call these (and the
    # attributes ``deterministic``, ``has_semantic_space``, ``run_config``) and nothing else; a
    # system overrides what applies to it, the defaults describe a one-way translator A -> B.
    def sample_outputs(self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator) -> Tensor:
        """(S, N, C, H, W) generated outputs for the inputs of ``batch``, for evaluation metrics;
        random draws come from ``generator``. Deterministic systems repeat their one output.
        Every system defines it (no default)."""
        raise NotImplementedError(f"{type(self).__name__} does not define sample_outputs")

    def sample_columns(
        self, batch: Mapping[str, Tensor], num_samples: int, generator: torch.Generator
    ) -> list[tuple[str, Tensor]]:
        """Titled (N, C, H, W) columns of a sample grid whose rows are the inputs of ``batch``: drawn
        by the sample-grid callback after validation and by ``evaluate`` as samples.png.

        Default: input, target, then ``num_samples`` outputs of :meth:`sample_outputs` (one for a
        deterministic system), the draws from ``generator``.
        """
        outputs = self.sample_outputs(batch, 1 if self.deterministic else num_samples, generator)
        columns = [("input", batch["A"].to(self.device)), ("target", batch["B"].to(self.device))]
        if self.deterministic:
            return [*columns, ("output", outputs[0])]
        return [*columns, *((f"sample {index + 1}", output) for index, output in enumerate(outputs))]

    def evaluation_directions(self) -> dict[str, tuple[Callable[[Mapping[str, Tensor]], Tensor] | None, str]]:
        """The translation directions ``evaluate`` judges, one pass each: name -> (outputs, real key).

        ``outputs(batch)`` gives one (N, C, H, W) output per input; None means :meth:`sample_outputs`
        with as many random draws as the metrics need. The real key names the batch images the
        outputs are compared with. A name prefixes the metric keys (``AtoB/fid``); the default, one
        unnamed direction A -> B through :meth:`sample_outputs` compared with B, keeps them bare.
        """
        return {"": (None, "B")}

    def semantic_embeddings(self, real_A: Tensor) -> tuple[Tensor, Tensor]:
        """(S(x), S(G(x))) of inputs ``real_A`` in the system's Siamese space, what
        ``metrics.semantic`` measures preservation in. Only where :attr:`has_semantic_space`."""
        raise NotImplementedError(f"{type(self).__name__} has no Siamese space (has_semantic_space is False)")

    def reconstruct(self, batch: Mapping[str, Tensor]) -> Tensor:
        """(N, C, H, W): each target of ``batch`` rebuilt from its input and its own latent code,
        G(A, E(B)) with E's mean. Only where :attr:`has_encoder`."""
        raise NotImplementedError(f"{type(self).__name__} has no encoder (has_encoder is False)")

    @property
    def latent_size(self) -> int | None:
        """Length of the latent code z that varies the outputs for one input (BicycleGAN's nz), or
        None for a system without one. CLIP guidance (``guide``) searches this code with
        :meth:`generate`, so it refuses a system whose latent_size is None."""
        return None

    def generate(self, real_A: Tensor, z: Tensor) -> Tensor:
        """Outputs for inputs ``real_A`` (N, C, H, W) and codes ``z`` (N, latent_size), differentiable
        in ``z`` (guidance ascends a CLIP score by gradient steps on z). Only where latent_size is set."""
        raise NotImplementedError(f"{type(self).__name__} has no latent code (latent_size is None)")

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

    def check_pretrained_files(self, resuming: bool) -> None:
        """Raise the error that names any pretrained file a fit of this system will read and cannot
        find. ``train`` calls it before a logger opens a run (a W&B run for a training that cannot
        start); ``resuming``: the fit continues a checkpoint, so files that only start a new fit are
        not needed. Systems that read such files lazily (in ``setup``) override it."""

    def compute_loss_term(self, name: str, results: ForwardResults) -> Tensor:
        return self._loss_terms[name](results)

    def parameters_of(self, optimizer_names: Sequence[str]) -> list[nn.Parameter]:
        groups = self.optimizer_groups()
        return [p for name in optimizer_names for p in groups[name].parameters() if p.requires_grad]

    def _optimizer(self, name: str):
        optimizers = self.optimizers()
        if not isinstance(optimizers, list):  # Lightning returns a system's only optimiser bare
            optimizers = [optimizers]
        return optimizers[self._optimizer_index[name]]

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
        self._stepped_optimizers.add(optimizer_name)

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
            if self.lr_scheduler_factory is not None:
                schedulers.append(make_scheduler(self.lr_scheduler_factory, optimizer, name))
        return optimizers, schedulers

    def to_memory_format(self, tensor: Tensor) -> Tensor:
        if self.use_channels_last and tensor.dim() == 4:
            return tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._stepped_optimizers.clear()
        with iteration_rng(self.seed, self.global_rank, self.iteration, self.device) as generator:
            inputs = self.prepare_iteration(batch, generator)
            results = ForwardResults(self._result_specs, inputs)
            values = self.engine.run_iteration(self, results, self.iteration)
        self.on_iteration_end(set(self._stepped_optimizers))
        if self.lr_scheduler_interval == "step":  # phases skipped (every: k, a non-finite loss) do not count
            self._step_lr_schedulers(self._stepped_optimizers)
        batch_size = self.batch_size_of(batch)
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
        if self.lr_scheduler_interval == "epoch":
            self._step_lr_schedulers(self.optimizer_groups())

    def _step_lr_schedulers(self, optimizer_names: Collection[str]) -> None:
        """Step the LR scheduler of each named optimiser (every optimiser has one, or none has)."""
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        for name, scheduler in zip(self.optimizer_groups(), schedulers):  # configure_optimizers' order
            if name in optimizer_names:
                scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["iteration"] = self.iteration
        if self.run_config is not None:
            checkpoint["run_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.iteration = int(checkpoint.get("iteration", 0))
