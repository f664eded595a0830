"""The schedule engine: per-phase isolation for every experiment, stale graphs, validation, NaNs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bicyclegan_pl.models.base import iteration_rng
from bicyclegan_pl.schedule import (
    ForwardResults,
    NonFiniteLossError,
    ResultSpec,
    ScheduleEngine,
    ScheduleError,
    parse_schedule,
)
from tests.helpers import EXPERIMENTS, build_model, clone, cpu_trainer, loader, random_batches


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()])


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_phase_moves_exactly_the_optimisers_it_steps(experiment, monkeypatch):
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
    cpu_trainer(limit_train_batches=1).fit(model, train_dataloaders=loader(batches))
    assert [phase.name for phase, _ in records] == [p["name"] for p in cfg.model.schedule]
    for phase, changed in records:
        for name, moved in changed.items():
            assert moved == (name in phase.step), (
                f"{experiment}: phase {phase.name!r} {'changed' if moved else 'did not change'} {name} "
                f"(it steps {list(phase.step)})"
            )


def test_experiments_cover_the_seed_ablations():
    expected = {
        "bicycle_reference", "bicycle_order_a", "bicycle_order_b", "bicycle_order_c",
        "bicycle_accum_1", "bicycle_accum_2", "bicycle_accum_3", "bicycle_accum_4",
        "bicycle_unet_input", "bicycle_unet_all", "bicycle_resnet", "bicycle_resnet_no_first_norm",
        "bicycle_msgan", "bicycle_seed001", "bicycle_seed001_baseline",
    }
    assert expected <= set(EXPERIMENTS)


def test_order_b_steps_encoder_before_generator_and_generator_sees_updated_encoder():
    model, cfg = build_model("+experiment=bicycle_order_b")
    assert [p["step"] for p in cfg.model.schedule] == [["E"], ["G"], ["D_vae"], ["D_clr"]]
    assert cfg.model.batch_split is False


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
        ([{"name": "p", "step": ["G"], "backward": [{"terms": ["t"], "into": ["E"]}]}], {}, "must be optimisers this phase steps"),
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
