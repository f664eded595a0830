"""The training-schedule engine shared by every system (README.md, "The training order is data").

What the seed reports ablate most is the ORDER in which optimisers step and how loss terms
are grouped into backward passes. A schedule is therefore data: an ordered list of phases,
each naming the optimisers it steps and the backward passes (groups of loss terms) that
produce their gradients. This module parses that data and executes it against a *host*
(the LightningModule), which owns the nets, the optimisers and the loss terms.

Guarantees (tested in tests/test_schedule.py and tests/test_bicyclegan_reference.py):
- a backward pass accumulates gradient only into the parameters of its ``into`` optimisers
  (default: the ones the phase steps), via ``backward(inputs=...)``, so no parameter's
  ``requires_grad`` is ever toggled (that is unsafe under ``torch.compile``);
- forward results are computed lazily, cached, and dropped as soon as a phase steps an
  optimiser whose parameters they depend on, so nothing backpropagates through a stale
  graph; detached results (for discriminator losses) may be reused, as the references do;
- all random draws of an iteration are made by the host before the first phase, so two
  schedules of the same system differ only in order.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from bicyclegan_pl.errors import UserError


class ScheduleError(UserError, ValueError):
    """A schedule or loss-weight configuration that cannot run; the message says what to change."""


class NonFiniteLossError(UserError, RuntimeError):
    """A loss term became NaN or infinite (or kept being so under ``model.on_nonfinite=skip``).

    A user error: the run diverged with the settings it was given, and the message names the
    settings that fix it (learning rate, the term's weight, gradient clipping,
    ``model.on_nonfinite=skip``), so the entry point prints it without a traceback."""


@dataclass(frozen=True)
class BackwardGroup:
    """Loss terms summed (with their weights) into one backward pass."""

    terms: tuple[str, ...]
    into: tuple[str, ...]


@dataclass(frozen=True)
class Phase:
    """Zero the grads of ``zero_grad`` (default: ``step``), run the backward groups, then step
    ``step`` in order; on the iterations ``i`` with ``i % every`` in ``offset`` only (seed 004's
    "k discriminator steps per generator step", each on its own minibatch; lazy regularisation).

    A phase whose ``zero_grad`` leaves out an optimiser it steps steps on the gradients earlier
    phases of the iteration accumulated into it (seed 000's loops: gradients of one backward
    kept across another net's step); a backward group may accumulate into an optimiser that a
    later phase steps. :func:`parse_schedule` checks that every such gradient is stepped, and
    that no step sees gradients left over from the previous iteration.
    """

    name: str
    step: tuple[str, ...]
    backward: tuple[BackwardGroup, ...]
    zero_grad: tuple[str, ...] = ()
    every: int = 1
    offset: tuple[int, ...] = (0,)

    def runs_at(self, iteration: int) -> bool:
        return iteration % self.every in self.offset


def _names(value: Any, where: str, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if (
        not isinstance(value, Sequence)
        or (not value and not allow_empty)
        or not all(isinstance(v, str) for v in value)
    ):
        raise ScheduleError(f"{where} must be a {'' if allow_empty else 'non-empty '}list of names, got {value!r}")
    return tuple(value)


def _known(names: Sequence[str], known: Sequence[str], where: str) -> None:
    for name in names:
        if name not in known:
            raise ScheduleError(f"{where} names unknown optimiser {name!r}; this system has {list(known)}")


def _positive_int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScheduleError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_schedule(
    raw: Sequence[Mapping[str, Any]],
    optimizer_names: Sequence[str],
    term_names: Sequence[str],
    loss_weights: Mapping[str, float],
) -> tuple[Phase, ...]:
    """Validate a schedule from the config and return it as immutable phases.

    Errors name the phase and key at fault and list the valid choices.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ScheduleError("model.schedule must be a non-empty list of phases")
    known_terms = set(term_names)
    unknown_weights = set(loss_weights) - known_terms
    if unknown_weights:
        raise ScheduleError(
            f"model.loss_weights has unknown terms {sorted(unknown_weights)}; known terms: {sorted(known_terms)}"
        )
    phases: list[Phase] = []
    used_terms: set[str] = set()
    for index, phase in enumerate(raw):
        name = str(phase.get("name", f"phase_{index}"))
        where = f"model.schedule[{index}] ({name})"
        extra = set(phase) - PHASE_KEYS
        if extra:
            raise ScheduleError(f"{where} has unknown keys {sorted(extra)}; allowed: {', '.join(sorted(PHASE_KEYS))}")
        step = _names(phase.get("step"), f"{where}.step", allow_empty=True)
        _known(step, optimizer_names, f"{where}.step")
        zero_grad = step
        if phase.get("zero_grad") is not None:
            zero_grad = _names(phase["zero_grad"], f"{where}.zero_grad", allow_empty=True)
            _known(zero_grad, optimizer_names, f"{where}.zero_grad")
        every = _positive_int(phase.get("every", 1), f"{where}.every", 1)
        raw_offset = phase.get("offset", 0)
        offsets = raw_offset if isinstance(raw_offset, Sequence) and not isinstance(raw_offset, str) else [raw_offset]
        offset = tuple(sorted({_positive_int(o, f"{where}.offset", 0) for o in offsets}))
        if not offset or offset[-1] >= every:
            raise ScheduleError(
                f"{where}.offset must be one or more iterations below every ({every}), e.g. 0 or [0, 1]; got {raw_offset!r}"
            )
        groups_raw = phase.get("backward")
        if not isinstance(groups_raw, Sequence) or isinstance(groups_raw, str) or not groups_raw:
            raise ScheduleError(f"{where}.backward must be a non-empty list of {{terms: [...], into: [...]}}")
        groups = []
        for group_index, group in enumerate(groups_raw):
            group_where = f"{where}.backward[{group_index}]"
            terms = _names(group.get("terms"), f"{group_where}.terms")
            for term in terms:
                if term not in known_terms:
                    raise ScheduleError(f"{group_where} names unknown loss term {term!r}; known: {sorted(known_terms)}")
            into = _names(group["into"], f"{group_where}.into") if group.get("into") is not None else step
            if not into:
                raise ScheduleError(f"{group_where} has no optimiser to put gradients into: give it into: [...]")
            _known(into, optimizer_names, f"{group_where}.into")
            used_terms.update(terms)
            groups.append(BackwardGroup(terms=terms, into=into))
        phases.append(
            Phase(name=name, step=step, backward=tuple(groups), zero_grad=zero_grad, every=every, offset=offset)
        )
    _check_gradient_flow(phases)
    unused = [t for t, w in loss_weights.items() if w and t not in used_terms]
    if unused:
        raise ScheduleError(
            f"loss terms {unused} have non-zero weights but no phase of model.schedule uses them; "
            "add them to a backward group or set their weight to 0"
        )
    return tuple(phases)


PHASE_KEYS = frozenset({"name", "step", "backward", "zero_grad", "every", "offset"})


def _check_gradient_flow(phases: Sequence[Phase]) -> None:
    """Every gradient a phase accumulates is stepped by it or by a later phase of the same
    iteration before anything zeroes it, and no step uses gradients of the previous iteration."""
    for index, phase in enumerate(phases):
        where = f"model.schedule[{index}] ({phase.name})"
        for optimizer in {o for group in phase.backward for o in group.into}:
            if optimizer in phase.step:
                continue
            later = next((p for p in phases[index + 1:] if optimizer in p.step or optimizer in p.zero_grad), None)
            if later is None or optimizer in later.zero_grad:
                fate = "never stepped" if later is None else f"wiped by phase {later.name!r}'s zero_grad"
                raise ScheduleError(
                    f"{where} puts gradients into {optimizer!r}, which this phase does not step and which are "
                    f"{fate}: step {optimizer!r} here or in a later phase that leaves it out of zero_grad"
                )
            if (later.every, later.offset) != (phase.every, phase.offset):
                raise ScheduleError(
                    f"{where} accumulates gradients into {optimizer!r} for phase {later.name!r}, which runs on other "
                    "iterations (every/offset differ): give both phases the same every and offset"
                )
        for optimizer in phase.step:
            if optimizer in phase.zero_grad:
                continue
            earlier = next((p for p in reversed(phases[:index]) if optimizer in p.zero_grad), None)
            if earlier is None or (earlier.every, earlier.offset) != (phase.every, phase.offset):
                raise ScheduleError(
                    f"{where} steps {optimizer!r} without zeroing its gradients, but no earlier phase of the same "
                    f"iterations zeroes them, so it would step on the previous iteration's gradients: add "
                    f"{optimizer!r} to this phase's zero_grad or to an earlier phase's"
                )


@dataclass(frozen=True)
class ResultSpec:
    """How to compute one forward result, and which optimisers' nets it runs directly.

    Dependencies on other results are discovered while computing (``results[name]`` calls
    inside ``compute``), so a spec only lists the nets it calls itself.
    """

    compute: Callable[["ForwardResults"], Any]
    nets: tuple[str, ...] = ()


def _detach(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)
    return value


class ForwardResults:
    """Lazily computed forward results of one iteration.

    ``results[name]`` returns a value with its autograd graph, computing it if it is missing
    or was invalidated by an optimiser step. ``results.detached(name)`` returns the latest
    value without graph, even if computed before an update (as the references do for the
    discriminators' fakes); if there is none yet it computes one under ``no_grad``.
    """

    def __init__(self, specs: Mapping[str, ResultSpec], inputs: Mapping[str, Any]):
        self.inputs = inputs
        self._specs = specs
        self._values: dict[str, tuple[Any, frozenset[str]]] = {}
        self._detached: dict[str, Any] = {}
        self._dependency_stack: list[set[str]] = []

    def _spec(self, name: str) -> ResultSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"unknown forward result {name!r}; known: {sorted(self._specs)}") from None

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            spec = self._spec(name)
            self._dependency_stack.append(set(spec.nets))
            try:
                value = spec.compute(self)
            finally:
                dependencies = frozenset(self._dependency_stack.pop())
            self._values[name] = (value, dependencies)
            self._detached[name] = _detach(value)
        value, dependencies = self._values[name]
        if self._dependency_stack:
            self._dependency_stack[-1].update(dependencies)
        return value

    def detached(self, name: str) -> Any:
        if name not in self._detached:
            with torch.no_grad():
                self._detached[name] = _detach(self._spec(name).compute(self))
        return self._detached[name]

    def invalidate(self, updated: Sequence[str]) -> None:
        """Forget (and so free the graphs of) every result that depends on an updated optimiser."""
        updated_set = set(updated)
        for name in [n for n, (_, deps) in self._values.items() if deps & updated_set]:
            del self._values[name]

    def cached(self) -> dict[str, frozenset[str]]:
        """Names of the results currently held with their graphs, with their dependencies."""
        return {name: deps for name, (_, deps) in self._values.items()}


class ScheduleHost(Protocol):
    """What the engine needs from a system (implemented by the LightningModule base class)."""

    def compute_loss_term(self, name: str, results: ForwardResults) -> Tensor: ...

    def parameters_of(self, optimizer_names: Sequence[str]) -> list[torch.nn.Parameter]: ...

    def zero_grad_of(self, optimizer_name: str) -> None: ...

    def backward_into(self, loss: Tensor, parameters: list[torch.nn.Parameter]) -> None: ...

    def step_optimizer(self, optimizer_name: str) -> None: ...

    def all_ranks_agree(self, flag: bool) -> bool: ...


#: the term named when the non-finite value was seen on another DDP rank only
ANOTHER_RANK = "<a term on another rank>"


@dataclass(frozen=True)
class SkippedStep:
    """One phase whose optimiser steps were skipped for a non-finite loss (``on_nonfinite=skip``)."""

    phase: str
    iteration: int
    #: the non-finite terms and their weighted values; empty when only another rank saw one
    terms: dict[str, float] = field(default_factory=dict)


class ScheduleEngine:
    """Runs the phases of a schedule for one iteration."""

    def __init__(self, phases: Sequence[Phase], loss_weights: Mapping[str, float], on_nonfinite: str = "raise"):
        if on_nonfinite not in ("raise", "skip"):
            raise ScheduleError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        self.phases = tuple(phases)
        self.loss_weights = dict(loss_weights)
        self.on_nonfinite = on_nonfinite
        self._discarded: set[str] = set()  # optimisers whose gradients a skipped phase dropped this iteration
        self.skipped_steps = 0
        #: the phases skipped in the latest iteration (``on_nonfinite=skip``), for a SkipMonitor
        self.last_skipped: list[SkippedStep] = []

    def run_iteration(self, host: ScheduleHost, results: ForwardResults, iteration: int) -> dict[str, Tensor]:
        """Run every phase in order; return the (detached, unweighted) value of each term computed."""
        self.last_skipped = []
        self._discarded: set[str] = set()
        logged: dict[str, Tensor] = {}
        for phase in self.phases:
            if phase.runs_at(iteration):
                self.run_phase(host, phase, results, iteration, logged)
        return logged

    def run_phase(
        self, host: ScheduleHost, phase: Phase, results: ForwardResults, iteration: int, logged: dict[str, Tensor]
    ) -> None:
        for optimizer_name in phase.zero_grad:
            host.zero_grad_of(optimizer_name)
            self._discarded.discard(optimizer_name)
        finite = True
        for group in phase.backward:
            total, values, weighted_values = self._weighted_sum(host, group, results)
            logged.update({name: value.detach() for name, value in values.items()})
            if total is None:
                continue
            if not self._is_finite(host, total):
                finite = False
                self._handle_nonfinite(weighted_values, phase, iteration)
                break
            if not total.requires_grad:
                continue
            host.backward_into(total, host.parameters_of(group.into))
        if not finite:
            # drop this phase's gradients, also those meant for later phases, which then skip
            # those optimisers' steps instead of stepping on part of their gradient
            dropped = set(phase.step) | {o for group in phase.backward for o in group.into}
            for optimizer_name in sorted(dropped):
                host.zero_grad_of(optimizer_name)
            self._discarded |= dropped
            return
        stepped = [name for name in phase.step if name not in self._discarded]
        for optimizer_name in stepped:
            host.step_optimizer(optimizer_name)
        results.invalidate(stepped)

    def _weighted_sum(
        self, host: ScheduleHost, group: BackwardGroup, results: ForwardResults
    ) -> tuple[Tensor | None, dict[str, Tensor], dict[str, Tensor]]:
        """Returns (sum of weighted terms, raw term values, weighted term values)."""
        total: Tensor | None = None
        values: dict[str, Tensor] = {}
        weighted_values: dict[str, Tensor] = {}
        for term in group.terms:
            weight = self.loss_weights.get(term, 1.0)
            if not weight:
                continue  # weight 0 turns a term off: not even computed
            value = host.compute_loss_term(term, results)
            values[term] = value
            weighted_values[term] = weighted = value * weight
            total = weighted if total is None else total + weighted
        return total, values, weighted_values

    @staticmethod
    def _is_finite(host: ScheduleHost, total: Tensor) -> bool:
        return host.all_ranks_agree(bool(torch.isfinite(total.detach()).all()))

    def _handle_nonfinite(self, weighted_values: Mapping[str, Tensor], phase: Phase, iteration: int) -> None:
        bad = {
            name: float(v.detach().float().mean()) for name, v in weighted_values.items() if not torch.isfinite(v).all()
        }
        where = f"at iteration {iteration} (phase {phase.name!r})"
        description = ", ".join(f"{name} (weighted) = {value}" for name, value in bad.items()) or "on another rank"
        if self.on_nonfinite == "raise":
            raise NonFiniteLossError(
                f"non-finite loss {description} {where}. Lower the learning rate or this term's weight, "
                "or set model.on_nonfinite=skip to skip such steps"
            )
        self.skipped_steps += 1
        self.last_skipped.append(SkippedStep(phase=phase.name, iteration=iteration, terms=bad))


class SkipMonitor:
    """Reports skipped steps without flooding the log, and stops a run that does not recover.

    A skip leaves that phase's nets unchanged. A transient cause (an outlier batch, an unlucky z,
    a bf16 overflow) skips isolated iterations; a cause in the parameters or optimiser state (NaN
    weights, exploded Adam moments) makes every later iteration skip as well, and training would
    go on for days producing nothing. So after ``max_consecutive`` iterations in a row with a
    skipped phase the run stops with :class:`NonFiniteLossError` (``None``: never stop).

    Each (phase, term) is warned about once per epoch; the rest is counted for the epoch summary.
    Under DDP every rank agrees on each skip (``all_ranks_agree``), so all ranks count the same
    streak and stop at the same iteration: none is left waiting in a collective.
    """

    def __init__(self, max_consecutive: int | None = 100):
        if max_consecutive is not None and (
            isinstance(max_consecutive, bool) or not isinstance(max_consecutive, int) or max_consecutive < 1
        ):
            raise ScheduleError(
                f"model.max_consecutive_skips must be an integer >= 1 (or null: never stop), got {max_consecutive!r}"
            )
        self.max_consecutive = max_consecutive
        self.epoch: int | None = None
        self.term_counts: Counter[tuple[str, str]] = Counter()  # (phase, term) -> skipped steps this epoch
        self.phase_counts: Counter[str] = Counter()  # phase -> skipped steps this epoch
        self.consecutive = 0  # iterations in a row with at least one skipped phase
        self.streak_start = 0

    def observe(self, epoch: int, iteration: int, skipped: Sequence[SkippedStep]) -> list[str]:
        """Count one iteration's skipped phases; return the warnings to show (a (phase, term) not yet
        seen this epoch). Raises NonFiniteLossError when the streak reaches ``max_consecutive``."""
        if epoch != self.epoch:
            self.epoch, self.term_counts, self.phase_counts = epoch, Counter(), Counter()
        messages = []
        for step in skipped:
            self.phase_counts[step.phase] += 1
            for term in step.terms or {ANOTHER_RANK: float("nan")}:
                if not self.term_counts[(step.phase, term)]:
                    value = f" (weighted) = {step.terms[term]}" if term in step.terms else ""
                    messages.append(
                        f"skipped a step of phase {step.phase!r} at iteration {iteration}: {term}{value} is not finite "
                        f"(model.on_nonfinite=skip). Further skips for it this epoch are only counted "
                        "(epoch summary, metric train/skipped_steps)"
                    )
                self.term_counts[(step.phase, term)] += 1
        if not skipped:
            self.consecutive = 0
            return messages
        if not self.consecutive:
            self.streak_start = iteration
        self.consecutive += 1
        if self.max_consecutive is not None and self.consecutive >= self.max_consecutive:
            last = "; ".join(f"phase {s.phase!r}: {', '.join(s.terms) or ANOTHER_RANK}" for s in skipped)
            raise NonFiniteLossError(
                f"stopped: {self.consecutive} consecutive iterations ({self.streak_start} to {iteration}) skipped steps "
                f"for non-finite losses (last: {last}), so training is not recovering. Lower the learning rate or "
                "these terms' weights, set model.gradient_clip_val, or raise model.max_consecutive_skips "
                "(null: never stop)"
            )
        return messages

    @staticmethod
    def step_metrics(phases: Sequence[str], skipped: Sequence[SkippedStep]) -> dict[str, float]:
        """Skipped steps of one iteration, in total and per phase; summed over an epoch by the logger."""
        per_phase = Counter(step.phase for step in skipped)
        return {"skipped_steps": float(len(skipped)), **{f"skipped_steps/{p}": float(per_phase[p]) for p in phases}}

    def epoch_summary(self) -> str | None:
        """One line with this epoch's skipped steps per phase and term; None if nothing was skipped."""
        if not self.phase_counts:
            return None
        phases = "; ".join(
            f"phase {phase!r} {count} ("
            + ", ".join(f"{term} {n}" for (p, term), n in self.term_counts.items() if p == phase)
            + ")"
            for phase, count in self.phase_counts.items()
        )
        return (
            f"epoch {self.epoch}: skipped {sum(self.phase_counts.values())} steps for non-finite losses "
            f"(model.on_nonfinite=skip): {phases}"
        )
