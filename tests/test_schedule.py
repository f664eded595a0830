"""The schedule engine: every experiment steps in its seed's order, per-phase isolation, which nets a
term reaches, recomputed results after an update, stale graphs, validation, NaNs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bicyclegan_pl.runtime.rng import iteration_rng
from bicyclegan_pl.runtime.schedule import (
    ForwardResults,
    NonFiniteLossError,
    ResultSpec,
    ScheduleEngine,
    ScheduleError,
    SkipMonitor,
    parse_schedule,
)
from tests.cli import TINY, run_train
from tests.helpers import (
    EXPERIMENTS,
    StepRecorder,
    build_model,
    clone,
    cpu_trainer,
    loader,
    random_batches,
    same_gradients,
)


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()])


# The optimiser steps of one iteration of each BicycleGAN experiment, as its source orders them
# (a phase stepping E and G steps E first, as the reference and seed 000's loops do)
DEFAULT_ORDER = ["E", "G", "D_vae", "D_clr"]
SEED000_FINAL = DEFAULT_ORDER  # "optimizer_E.step(); optimizer_G.step()", then D_VAE, D_LR
STEP_ORDERS = {
    "bicycle_reference": DEFAULT_ORDER,
    # seed 000's own loops
    "bicycle_seed000_final": SEED000_FINAL,
    "bicycle_seed000_early": ["G", "E", "D_vae", "D_clr"],
    "bicycle_seed000_train2": ["E", "G", "D"],
    "bicycle_seed000_final_two_steps": ["E", "G", "E", "G", "D_vae", "D_clr"],  # a step-count control
    # the report's lists read as its code does: one step of E and G from accumulated backward calls
    "bicycle_order_a": ["G", "E", "D_vae", "D_clr"],
    "bicycle_order_b": SEED000_FINAL,
    "bicycle_order_c": ["E", "G", "G", "D_clr", "G", "D_vae"],
    "bicycle_accum_1": SEED000_FINAL,
    "bicycle_accum_2": ["D_vae", "D_clr", "E", "G"],
    "bicycle_accum_3": ["E", "G", "D_vae", "D_clr"],
    "bicycle_accum_4": SEED000_FINAL,
    # ... and literally ("->" = backward + step)
    "bicycle_order_a_stepwise": ["G", "E", "D_vae", "D_clr"],
    "bicycle_order_b_stepwise": ["E", "G", "D_vae", "D_clr"],
    "bicycle_order_c_stepwise": ["E", "G", "G", "D_clr", "G", "D_vae"],
    "bicycle_accum_1_stepwise": ["E", "G", "E", "G", "D_vae", "D_clr"],
    "bicycle_accum_2_stepwise": ["E", "G", "G", "D_vae", "D_clr", "E", "G"],
    "bicycle_accum_4_stepwise": ["E", "G", "E", "G", "D_vae", "D_clr"],
    # generator and loss variants keep the reference's order
    **{name: DEFAULT_ORDER for name in (
        "bicycle_msgan", "bicycle_unet_input", "bicycle_unet_all", "bicycle_resnet", "bicycle_resnet_no_first_norm",
        "bicycle_seed001", "bicycle_seed001_baseline",
    )},
}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_steps_in_its_seeds_order_and_each_phase_moves_only_what_it_steps(experiment, monkeypatch):
    assert experiment in STEP_ORDERS, f"{experiment}: add the order its seed describes to STEP_ORDERS"
    model, cfg = build_model(f"+experiment={experiment}")
    groups = model.optimizer_groups()
    records = []
    original = ScheduleEngine.run_phase

    def recording(self, host, phase, results, iteration, logged):
        before = {name: _flat(net) for name, net in groups.items()}
        original(self, host, phase, results, iteration, logged)
        after = {name: _flat(net) for name, net in groups.items()}
        records.append((phase, {name: not torch.equal(before[name], after[name]) for name in groups}))

    monkeypatch.setattr(ScheduleEngine, "run_phase", recording)
    batches = random_batches(1, batch_size=4, size=cfg.data.crop_size, input_nc=cfg.data.input_nc)
    recorder = StepRecorder()
    cpu_trainer(limit_train_batches=1, callbacks=[recorder]).fit(model, train_dataloaders=loader(batches))
    assert recorder.order == STEP_ORDERS[experiment]
    assert [phase.name for phase, _ in records] == [p["name"] for p in cfg.model.schedule]
    for phase, changed in records:
        for name, moved in changed.items():
            assert moved == (name in phase.step), (
                f"{experiment}: phase {phase.name!r} {'changed' if moved else 'did not change'} {name} "
                f"(it steps {list(phase.step)})"
            )


def _gradients(loss: torch.Tensor, module: torch.nn.Module) -> list[torch.Tensor]:
    parameters = list(module.parameters())
    found = torch.autograd.grad(loss, parameters, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, found)]


def test_literal_order_b_steps_the_generator_on_gradients_through_the_updated_encoder():
    """Seed 000's best order read literally (Encoder, then Generator, each a backward and a step),
    on the whole batch (its loop does not split it): G's phase recomputes G(A, E(B)) and
    E(G(A, z)) with the encoder that E's phase has just stepped, so G steps on exactly the
    gradient of its terms through the updated E."""
    torch.manual_seed(0)
    model, cfg = build_model("+experiment=bicycle_order_b_stepwise", "model.generator.use_dropout=false")
    initial = clone(model)
    batches = random_batches(1, batch_size=4, size=cfg.data.crop_size, input_nc=cfg.data.input_nc)
    encoded_batch_sizes = []
    model.encoder.register_forward_hook(lambda module, args, output: encoded_batch_sizes.append(args[0].shape[0]))
    recorder = StepRecorder()
    cpu_trainer(limit_train_batches=1, callbacks=[recorder]).fit(model, train_dataloaders=loader(batches))
    assert recorder.order == ["E", "G", "D_vae", "D_clr"]
    assert encoded_batch_sizes and set(encoded_batch_sizes) == {4}  # no cVAE / cLR split of the batch

    def generator_gradient_with(encoder: torch.nn.Module) -> list[torch.Tensor]:
        """G's gradient from its terms (vae_gan, clr_gan, vae_l1, clr_latent) of iteration 0 with this encoder."""
        host = clone(initial)
        host.encoder.load_state_dict(encoder.state_dict())
        with iteration_rng(cfg.seed, 0, 0, torch.device("cpu")) as generator:
            results = ForwardResults(host.forward_results(), host.prepare_iteration(batches[0], generator))
        terms, weights = host.loss_terms(), cfg.model.loss_weights
        loss = sum(weights[name] * terms[name](results) for name in ("vae_gan", "clr_gan", "vae_l1", "clr_latent"))
        return _gradients(loss, host.generator)

    [stepped_with] = recorder.gradients("G")
    assert same_gradients(stepped_with, generator_gradient_with(model.encoder))  # E as stepped in this iteration
    assert not same_gradients(stepped_with, generator_gradient_with(initial.encoder))


@pytest.mark.parametrize(
    ("experiment", "reaches_encoder"),
    [
        ("bicycle_reference", False),  # junyanz: the latent L1 backward runs with E frozen
        ("bicycle_msgan", False),
        ("bicycle_accum_3", True),  # seed 000's loop does not freeze E for it
        ("bicycle_seed000_final", True),
        ("bicycle_seed000_train2", False),  # train2.py freezes E for it, as junyanz
    ],
)
def test_latent_l1_reaches_the_encoder_only_where_the_experiment_lets_it(experiment, reaches_encoder):
    """E's gradients are those of the same iteration without the term (weight 0) exactly when the
    term may not reach E; G's gradients always change with it."""

    def steps(weight: float) -> StepRecorder:
        torch.manual_seed(0)
        model, cfg = build_model(
            f"+experiment={experiment}", "model.generator.use_dropout=false", f"model.loss_weights.clr_latent={weight}"
        )
        batches = random_batches(1, batch_size=4, size=cfg.data.crop_size, input_nc=cfg.data.input_nc)
        recorder = StepRecorder()
        cpu_trainer(limit_train_batches=1, callbacks=[recorder]).fit(model, train_dataloaders=loader(batches))
        return recorder

    with_term, without_term = steps(0.5), steps(0.0)
    assert with_term.order == without_term.order
    encoder_steps = list(zip(with_term.gradients("E"), without_term.gradients("E")))
    assert encoder_steps and all(any(g.abs().sum() > 0 for g in ours) for ours, _ in encoder_steps)
    assert any(not same_gradients(a, b) for a, b in encoder_steps) == reaches_encoder
    assert not same_gradients(with_term.gradients("G")[0], without_term.gradients("G")[0])


def _manual_stale_loop(G, E, batches, seed, nz, recompute: bool):
    """Step G on vae_l1, then E on vae_l1 (which needs G's output after G's update)."""
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_E = torch.optim.Adam(E.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for iteration, batch in enumerate(batches):
        with iteration_rng(seed, 0, iteration, torch.device("cpu")) as generator:
            A, B = batch["A"], batch["B"]
            eps = torch.randn(A.shape[0], nz, generator=generator)
            torch.randn(A.shape[0], nz, generator=generator)  # z_random, drawn but unused here

            def fake():
                mu, logvar = E(B)
                return G(A, eps.mul(logvar.mul(0.5).exp()).add(mu))

            first = fake()
            opt_G.zero_grad()
            (F.l1_loss(first, B) * 10.0).backward(inputs=list(G.parameters()), retain_graph=True)
            opt_G.step()
            second = fake() if recompute else first
            opt_E.zero_grad()
            (F.l1_loss(second, B) * 10.0).backward(inputs=list(E.parameters()))
            opt_E.step()


STALE_SCHEDULE = (
    "model.batch_split=false",
    "model.generator.use_dropout=false",
    "model.loss_weights={vae_l1: 10.0, kl: 0.0, vae_gan: 0.0, clr_gan: 0.0, clr_latent: 0.0, d_vae: 0.0, d_clr: 0.0}",
    "model.schedule=[{name: g, step: [G], backward: [{terms: [vae_l1]}]},"
    " {name: e, step: [E], backward: [{terms: [vae_l1]}]}]",
)


def test_reordered_phase_recomputes_results_of_updated_nets():
    model, cfg = build_model(*STALE_SCHEDULE)
    G, E = clone(model.generator), clone(model.encoder)
    batches = random_batches(2, batch_size=2, size=32)
    cpu_trainer(limit_train_batches=2).fit(model, train_dataloaders=loader(batches))
    _manual_stale_loop(G, E, batches, cfg.seed, cfg.model.nz, recompute=True)
    for ours, theirs in ((model.generator, G), (model.encoder, E)):
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
            assert torch.equal(a, b)
    # ... and reusing the graph built before G's update is exactly what autograd forbids
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        _manual_stale_loop(clone(G), clone(E), batches, cfg.seed, cfg.model.nz, recompute=False)


def test_forward_results_invalidate_only_dependents_and_keep_detached_values():
    net_a, net_b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    calls = {"a": 0, "b": 0}

    def compute_a(r):
        calls["a"] += 1
        return net_a(r.inputs["x"])

    def compute_b(r):
        calls["b"] += 1
        return net_b(r["a"])

    results = ForwardResults({"a": ResultSpec(compute_a, ("A",)), "b": ResultSpec(compute_b, ("B",))}, {"x": torch.ones(1, 2)})
    b_value = results["b"]
    assert results.cached() == {"a": frozenset({"A"}), "b": frozenset({"A", "B"})}
    results.invalidate(["B"])
    assert set(results.cached()) == {"a"}  # a does not depend on B's nets
    assert torch.equal(results.detached("b"), b_value.detach())  # stale detached value is reused
    assert not results.detached("b").requires_grad
    results.invalidate(["A"])
    assert results.cached() == {}
    results["b"]
    assert calls == {"a": 2, "b": 2}


@pytest.mark.parametrize(
    ("schedule", "weights", "message"),
    [
        ([{"name": "p", "step": ["X"], "backward": [{"terms": ["t"]}]}], {}, "unknown optimiser 'X'"),
        ([{"name": "p", "step": ["G"], "backward": [{"terms": ["nope"]}]}], {}, "unknown loss term 'nope'"),
        ([{"name": "p", "step": ["G"], "backward": [{"terms": ["t"], "into": ["E"]}]}], {}, "'E'.*never stepped"),
        (
            [
                {"name": "p", "step": ["G"], "backward": [{"terms": ["t"], "into": ["G", "E"]}]},
                {"name": "q", "step": ["E"], "backward": [{"terms": ["u"]}]},
            ],
            {},
            "wiped by phase 'q'",
        ),
        ([{"name": "p", "step": ["G"], "zero_grad": [], "backward": [{"terms": ["t"]}]}], {}, "previous iteration"),
        (
            [
                {"name": "p", "step": [], "zero_grad": ["E"], "backward": [{"terms": ["t"], "into": ["E"]}]},
                {"name": "q", "step": ["E"], "zero_grad": [], "every": 2, "backward": [{"terms": ["u"]}]},
            ],
            {},
            "every/offset differ",
        ),
        ([{"name": "p", "step": ["G"], "every": 2, "offset": 2, "backward": [{"terms": ["t"]}]}], {}, "below every"),
        ([{"name": "p", "step": ["G"], "every": 0, "backward": [{"terms": ["t"]}]}], {}, "every must be an integer >= 1"),
        ([{"name": "p", "step": [], "backward": [{"terms": ["t"]}]}], {}, "no optimiser to put gradients into"),
        ([{"name": "p", "step": ["G"], "zero_grad": ["X"], "backward": [{"terms": ["t"]}]}], {}, "zero_grad names unknown"),
        ([{"name": "p", "step": ["G"], "backward": [{"terms": ["t"]}]}], {"u": 1.0}, "no phase of model.schedule uses them"),
        ([{"name": "p", "step": ["G"], "backward": [{"terms": ["t"]}]}], {"zz": 1.0}, "unknown terms"),
        ([{"name": "p", "step": ["G"], "backward": [], "extra": 1}], {}, "unknown keys"),
        ([], {}, "non-empty list"),
    ],
)
def test_schedule_errors_name_the_problem(schedule, weights, message):
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(schedule, ["G", "E"], ["t", "u"], weights)


def test_weight_zero_term_is_not_computed():
    model, _ = build_model("model.loss_weights.kl=0")
    computed = []
    terms = model.loss_terms()
    model.loss_terms = lambda: {name: (lambda r, n=name, f=fn: computed.append(n) or f(r)) for name, fn in terms.items()}
    cpu_trainer(limit_train_batches=1).fit(model, train_dataloaders=loader(random_batches(1, 2)))
    assert "kl" not in computed and "vae_l1" in computed


def _nan_at_iteration(model, term: str, iteration: int):
    terms = model.loss_terms()

    def patched(r, f=terms[term]):
        value = f(r)
        return value * float("nan") if model.iteration == iteration else value

    model.loss_terms = lambda: {**terms, term: patched}


def test_nonfinite_loss_stops_naming_term_and_iteration():
    model, _ = build_model()
    _nan_at_iteration(model, "kl", 1)
    with pytest.raises(NonFiniteLossError, match=r"kl \(weighted\) = nan at iteration 1 \(phase 'generator_encoder'\)"):
        cpu_trainer(limit_train_batches=3).fit(model, train_dataloaders=loader(random_batches(3, 2)))


def test_nonfinite_loss_skip_leaves_that_phase_unstepped_and_continues():
    model, _ = build_model("model.on_nonfinite=skip")
    _nan_at_iteration(model, "kl", 0)
    generator_before, discriminator_before = _flat(model.generator), _flat(model.discriminator_vae)
    with pytest.warns(UserWarning, match="skipped a step"):
        cpu_trainer(limit_train_batches=1).fit(model, train_dataloaders=loader(random_batches(1, 2)))
    assert torch.equal(_flat(model.generator), generator_before)  # G/E phase skipped
    assert not torch.equal(_flat(model.discriminator_vae), discriminator_before)  # D phase still ran
    assert model.engine.skipped_steps == 1 and model.iteration == 1


def _nan_at_iterations(model, term: str, iterations) -> None:
    """Make ``term`` NaN in the given iterations (a container of iteration numbers)."""
    terms = model.loss_terms()

    def patched(r, f=terms[term]):
        value = f(r)
        return value * float("nan") if model.iteration in iterations else value

    model.loss_terms = lambda: {**terms, term: patched}


def test_skips_are_warned_once_per_term_and_epoch_summed_up_and_logged(recwarn, capsys):
    model, _ = build_model("model.on_nonfinite=skip", "model.max_consecutive_skips=null")
    _nan_at_iterations(model, "kl", range(100))  # every iteration of both epochs
    trainer = cpu_trainer(max_epochs=2)
    trainer.fit(model, train_dataloaders=loader(random_batches(3, 2)))
    assert model.iteration == 6 and model.engine.skipped_steps == 6
    warned = [str(w.message) for w in recwarn if "skipped a step" in str(w.message)]
    assert len(warned) == 2  # 6 skipped steps, one warning per epoch
    assert "phase 'generator_encoder' at iteration 0: kl (weighted) = nan is not finite" in warned[0]
    assert "at iteration 3: kl" in warned[1]
    printed = capsys.readouterr().out
    for epoch in (0, 1):
        assert f"epoch {epoch}: skipped 3 steps for non-finite losses (model.on_nonfinite=skip): phase 'generator_encoder' 3 (kl 3)" in printed
    metrics = trainer.callback_metrics  # the last epoch's sums
    assert metrics["train/skipped_steps"] == 3 and metrics["train/skipped_steps/generator_encoder"] == 3
    assert metrics["train/skipped_steps/discriminators"] == 0


def test_a_clean_epoch_logs_zero_skipped_steps_and_prints_no_summary(capsys):
    model, _ = build_model("model.on_nonfinite=skip")
    trainer = cpu_trainer()
    trainer.fit(model, train_dataloaders=loader(random_batches(2, 2)))
    assert trainer.callback_metrics["train/skipped_steps"] == 0
    assert "non-finite" not in capsys.readouterr().out


def test_a_skip_seen_on_another_rank_only_is_named_so(recwarn):
    model, _ = build_model("model.on_nonfinite=skip")
    model.all_ranks_agree = lambda flag: False  # another rank reported a non-finite total
    cpu_trainer(limit_train_batches=1).fit(model, train_dataloaders=loader(random_batches(1, 2)))
    warned = [str(w.message) for w in recwarn if "skipped a step" in str(w.message)]
    assert len(warned) == 2 and all("<a term on another rank> is not finite" in m for m in warned)  # both phases


def test_consecutive_skips_stop_the_run_naming_the_streak_and_the_setting():
    model, _ = build_model("model.on_nonfinite=skip", "model.max_consecutive_skips=3")
    _nan_at_iterations(model, "kl", range(1, 100))
    message = r"3 consecutive iterations \(1 to 3\) skipped steps .*phase 'generator_encoder': kl.*model\.max_consecutive_skips"
    with pytest.warns(UserWarning, match="skipped a step"), pytest.raises(NonFiniteLossError, match=message):
        cpu_trainer().fit(model, train_dataloaders=loader(random_batches(6, 2)))
    assert model.iteration == 3  # stopped in iteration 3, before the next one


def test_skips_with_clean_iterations_between_them_do_not_stop_the_run():
    model, _ = build_model("model.on_nonfinite=skip", "model.max_consecutive_skips=2")
    _nan_at_iterations(model, "kl", {0, 2, 4})  # 3 skips, never 2 in a row
    with pytest.warns(UserWarning, match="skipped a step"):
        cpu_trainer().fit(model, train_dataloaders=loader(random_batches(6, 2)))
    assert model.iteration == 6 and model.engine.skipped_steps == 3


@pytest.mark.parametrize("value", [0, -1, 2.5, "many"])
def test_max_consecutive_skips_must_be_a_positive_integer_or_null(value):
    with pytest.raises(ScheduleError, match=r"model\.max_consecutive_skips must be an integer >= 1 \(or null"):
        SkipMonitor(value)


def test_a_run_that_keeps_skipping_stops_with_a_one_line_error(tmp_path):
    result = run_train(
        *TINY, "trainer.max_epochs=1", "logger=none", "callbacks.metrics=null", f"hydra.run.dir={tmp_path / 'run'}",
        "model.on_nonfinite=skip", "model.loss_weights.kl=nan", "model.max_consecutive_skips=2",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: stopped: 2 consecutive iterations (0 to 1) skipped steps" in result.stderr
    assert "Traceback" not in result.stderr


class _ToyHost:
    """Two nets with an optimiser each and loss terms on their outputs, for engine-level tests."""

    def __init__(self):
        torch.manual_seed(0)
        self.nets = {"G": torch.nn.Linear(2, 1), "E": torch.nn.Linear(2, 1)}
        self.optimizers = {n: torch.optim.SGD(m.parameters(), lr=0.1) for n, m in self.nets.items()}
        self.stepped: list[str] = []
        self.nan_terms: set[str] = set()
        x = torch.ones(1, 2)
        self.terms = {
            "g": lambda r: self.nets["G"](x).sum() + self.nets["E"](x).sum(),
            "e": lambda r: self.nets["E"](x).sum() * (float("nan") if "e" in self.nan_terms else 1.0),
        }

    def compute_loss_term(self, name, results):
        return self.terms[name](results)

    def parameters_of(self, names):
        return [p for n in names for p in self.nets[n].parameters()]

    def zero_grad_of(self, name):
        self.optimizers[name].zero_grad(set_to_none=True)

    def backward_into(self, loss, parameters):
        loss.backward(inputs=parameters, retain_graph=True)

    def step_optimizer(self, name):
        self.stepped.append(name)
        self.optimizers[name].step()

    def all_ranks_agree(self, flag):
        return flag


ACCUMULATING = [
    {"name": "both", "step": ["G"], "zero_grad": ["G", "E"], "backward": [{"terms": ["g"], "into": ["G", "E"]}]},
    {"name": "encoder", "step": ["E"], "zero_grad": [], "backward": [{"terms": ["e"]}]},
]


def test_a_later_phase_steps_on_the_gradients_an_earlier_phase_accumulated():
    host = _ToyHost()
    engine = ScheduleEngine(parse_schedule(ACCUMULATING, ["G", "E"], ["g", "e"], {}), {})
    engine.run_iteration(host, ForwardResults({}, {}), iteration=0)
    assert host.stepped == ["G", "E"]
    # E's gradient: d(g)/dE + d(e)/dE = 2 x for the input x = (1, 1), bias 2
    assert torch.equal(host.nets["E"].weight.grad, torch.full((1, 2), 2.0))
    assert torch.equal(host.nets["E"].bias.grad, torch.tensor([2.0]))


def test_a_skipped_phase_drops_what_it_accumulated_for_later_phases_too():
    host = _ToyHost()
    schedule = [
        {"name": "both", "step": ["G"], "zero_grad": ["G", "E"], "backward": [{"terms": ["e"], "into": ["G", "E"]}]},
        {"name": "encoder", "step": ["E"], "zero_grad": [], "backward": [{"terms": ["g"], "into": ["E"]}]},
    ]
    host.nan_terms.add("e")
    engine = ScheduleEngine(parse_schedule(schedule, ["G", "E"], ["g", "e"], {}), {}, on_nonfinite="skip")
    engine.run_iteration(host, ForwardResults({}, {}), iteration=0)
    # the first phase's NaN drops E's share as well: E must not step on the second phase's half
    assert host.stepped == []
    assert [s.phase for s in engine.last_skipped] == ["both"]
    host.nan_terms.clear()
    engine.run_iteration(host, ForwardResults({}, {}), iteration=1)
    assert host.stepped == ["G", "E"]
