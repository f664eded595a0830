"""Gradient penalties (WGAN-GP, R1) as loss terms of the discriminator phases: the values and
double-backward gradients against a hand-derived critic gradient, the images each system's
penalty judges, that the penalty moves the discriminators only, and the refusal of a WGAN
without its penalty."""
from __future__ import annotations

import pytest
import torch
from hydra.errors import InstantiationException
from torch import nn

from bicyclegan_pl.losses import gradient_penalty, interpolation_gradient_penalty, r1_penalty
from bicyclegan_pl.runtime.schedule import ForwardResults, ResultSpec, ScheduleError
from tests.cli import run_train
from tests.helpers import (
    SMALL_CYCLEGAN,
    StepRecorder,
    build_model,
    clone,
    cpu_trainer,
    loader,
    random_batches,
    same_gradients,
)

BICYCLE_WGAN = ("model.gan_mode=wgangp", "model.loss_weights.d_vae_gp=10", "model.loss_weights.d_clr_gp=10")
CYCLE_WGAN = (*SMALL_CYCLEGAN, "model.gan_mode=wgangp", "model.loss_weights.d_A_gp=10", "model.loss_weights.d_B_gp=10")


# ---- the penalties against a critic whose input gradient is written out by hand ------------------
class TwoScales(nn.Module):
    """A critic returning a list of maps, as the multi-scale PatchGAN: [D(x), 2 D(x)]."""

    def __init__(self, critic: nn.Module):
        super().__init__()
        self.critic = critic

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.critic(x), 2 * self.critic(x)]


def _toy_critic() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 1)).double()


def _hand_input_gradient(critic: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """d critic(x) / dx per sample, derived by hand: W1^T (w2 * (1 - tanh(W1 x + b1)^2))."""
    first, last = critic[1], critic[3]
    hidden = x.flatten(1) @ first.weight.T + first.bias
    return (last.weight * (1 - torch.tanh(hidden) ** 2)) @ first.weight


def _images(seed: int) -> torch.Tensor:
    return torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _parameter_gradients(critic: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    """The gradients ``loss.backward`` puts into the critic (zeros where none reaches)."""
    critic.zero_grad(set_to_none=True)
    loss.backward(inputs=list(critic.parameters()))
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in critic.parameters()]


def _hand_parameter_gradients(critic: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    gradients = torch.autograd.grad(loss, list(critic.parameters()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(critic.parameters(), gradients)]


def _assert_close(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), (a, b)


@pytest.mark.parametrize("scales", [1, 2])
def test_wgangp_penalty_equals_hand_written_double_backward(scales):
    critic = _toy_critic()
    discriminator = critic if scales == 1 else TwoScales(critic)
    real, fake = _images(1), _images(2)
    alpha = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)

    ours = interpolation_gradient_penalty(discriminator, real, fake, alpha)
    assert torch.equal(ours, gradient_penalty("wgangp", discriminator, real, fake, alpha))

    x_hat = alpha.view(-1, 1, 1, 1) * real + (1 - alpha.view(-1, 1, 1, 1)) * fake
    # a list of maps is summed over scales: [D, 2D] has 3x D's input gradient
    gradients = _hand_input_gradient(critic, x_hat) * (1 if scales == 1 else 3)
    theirs = ((gradients.norm(dim=1) - 1) ** 2).mean()
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=0) and theirs > 0.01
    _assert_close(_parameter_gradients(critic, ours), _hand_parameter_gradients(critic, theirs))


def test_r1_penalty_equals_hand_written_double_backward():
    critic = _toy_critic()
    real = _images(1)
    ours = r1_penalty(critic, real)
    assert torch.equal(ours, gradient_penalty("r1", critic, real))
    theirs = _hand_input_gradient(critic, real).pow(2).sum(dim=1).mean()
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=0) and theirs > 0
    _assert_close(_parameter_gradients(critic, ours), _hand_parameter_gradients(critic, theirs))


def test_penalties_put_no_gradient_into_the_images_they_judge():
    critic = _toy_critic()
    real, fake = _images(1).requires_grad_(True), _images(2).requires_grad_(True)
    alpha = torch.full((4,), 0.5, dtype=torch.float64)
    loss = interpolation_gradient_penalty(critic, real, fake, alpha) + r1_penalty(critic, real)
    loss.backward()
    assert real.grad is None and fake.grad is None
    assert all(p.grad is not None for p in critic[1].parameters())


# ---- which images each system's penalty judges ------------------------------------------------------
def _results(model, batch, overrides: dict[str, torch.Tensor] | None = None) -> ForwardResults:
    generator = torch.Generator().manual_seed(3)
    specs = model.forward_results()
    for name, value in (overrides or {}).items():
        specs[name] = ResultSpec(lambda r, value=value: value)
    return ForwardResults(specs, model.prepare_iteration(batch, generator))


@pytest.mark.parametrize("kind", ["wgangp", "r1"])
def test_bicyclegan_penalties_judge_the_images_of_their_discriminator_terms(kind):
    model, _ = build_model(*BICYCLE_WGAN, f"model.gradient_penalty={kind}")
    results = _results(model, random_batches(1, batch_size=4)[0])
    terms = model.loss_terms()
    for term, discriminator, real, fake in (
        ("d_vae_gp", model.discriminator_vae, "real_B_encoded", "fake_B_encoded"),
        ("d_clr_gp", model.discriminator_clr, "real_B_random", "fake_B_random"),
    ):
        alpha = results.inputs.get(f"alpha_{term}")
        assert (alpha is not None) == (kind == "wgangp")
        if alpha is not None:
            assert alpha.shape == (2,) and ((alpha >= 0) & (alpha <= 1)).all()
        expected = gradient_penalty(kind, discriminator, results.inputs[real], results.detached(fake), alpha)
        assert torch.equal(terms[term](results), expected), term


def test_shared_discriminator_is_the_one_the_clr_penalty_differentiates():
    model, _ = build_model(*BICYCLE_WGAN, "model.shared_discriminator=true")
    inputs = model.prepare_iteration(random_batches(1, batch_size=4)[0], torch.Generator().manual_seed(3))
    results = ForwardResults(model.forward_results(), inputs)
    model.loss_terms()["d_clr_gp"](results).backward()
    assert all(p.grad is not None for p in model.discriminator_vae.scales[0].model[0].parameters())
    assert all(p.grad is None for p in model.generator.parameters())


def test_cyclegan_penalties_judge_the_real_and_pooled_fake_images():
    model, _ = build_model(*CYCLE_WGAN, tiny=False)
    batch = random_batches(1, batch_size=2, size=32, input_nc=3)[0]
    # pooled fakes unlike the current ones (as a filled pool returns), so using fake_B instead would show
    pooled = {name: torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i, name in
              enumerate(("pooled_fake_B", "pooled_fake_A"))}
    results = _results(model, batch, pooled)
    terms = model.loss_terms()
    for term, discriminator, real, fake in (
        ("d_A_gp", model.discriminator_A, "real_B", "pooled_fake_B"),
        ("d_B_gp", model.discriminator_B, "real_A", "pooled_fake_A"),
    ):
        expected = interpolation_gradient_penalty(
            discriminator, results.inputs[real], pooled[fake], results.inputs[f"alpha_{term}"]
        )
        assert torch.equal(terms[term](results), expected), term


# ---- training: the penalty moves the discriminators, nothing else ----------------------------------
class GradientsAtIterationEnd(StepRecorder):
    """Also records the generator-side nets' gradients after each iteration (after the D phase)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names
        self.at_end: list[dict[str, list[torch.Tensor]]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        groups = pl_module.optimizer_groups()
        self.at_end.append({
            name: [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in groups[name].parameters()]
            for name in self.names
        })


def _fit(model, batches, names: tuple[str, ...]) -> GradientsAtIterationEnd:
    recorder = GradientsAtIterationEnd(names)
    cpu_trainer(limit_train_batches=len(batches), callbacks=[recorder]).fit(model, train_dataloaders=loader(batches))
    return recorder


def _without_penalty(model, terms: tuple[str, ...]):
    """The same system (same initial weights) with the penalties' weights set to 0, bypassing the
    wgangp refusal that a config would meet."""
    twin = clone(model)
    twin.loss_weights = {**model.loss_weights, **{term: 0.0 for term in terms}}
    return twin


def _check_penalty_reaches_only_the_discriminators(model, batches, generators, discriminators, penalties):
    twin = _without_penalty(model, penalties)
    ours, theirs = _fit(model, batches, generators), _fit(twin, batches, generators)
    assert ours.order == theirs.order
    for name in generators:  # the first generator-side step precedes any penalty: unchanged, same draws
        assert same_gradients(ours.gradients(name)[0], theirs.gradients(name)[0]), name
        # the D phase added nothing to the generator-side nets' gradients
        for iteration in range(len(batches)):
            assert same_gradients(ours.at_end[iteration][name], ours.gradients(name)[iteration]), name
    for name in discriminators:
        assert not same_gradients(ours.gradients(name)[0], theirs.gradients(name)[0]), name
    logged = model.trainer.callback_metrics
    for term in penalties:
        assert torch.isfinite(logged[f"train/{term}_epoch"]) and logged[f"train/{term}_epoch"] > 0
        assert f"train/{term}_epoch" not in twin.trainer.callback_metrics


@pytest.mark.parametrize("kind", ["wgangp", "r1"])
def test_bicyclegan_penalty_steps_the_discriminators_only(kind):
    torch.manual_seed(0)
    model, _ = build_model(*BICYCLE_WGAN, f"model.gradient_penalty={kind}")
    _check_penalty_reaches_only_the_discriminators(
        model, random_batches(2, batch_size=2), ("G", "E"), ("D_vae", "D_clr"), ("d_vae_gp", "d_clr_gp")
    )


def test_cyclegan_penalty_steps_the_discriminators_only():
    torch.manual_seed(0)
    model, _ = build_model(*CYCLE_WGAN, tiny=False)
    _check_penalty_reaches_only_the_discriminators(
        model, random_batches(2, batch_size=2, size=32, input_nc=3), ("G_A", "G_B"), ("D_A", "D_B"),
        ("d_A_gp", "d_B_gp"),
    )


def test_travelgan_penalty_steps_the_discriminator_only():
    torch.manual_seed(0)
    model, _ = build_model(
        "model=travelgan", "model/siamese=learned", "model.siamese.nf=8", "model.siamese.latent_dim=16",
        "data=synthetic_unpaired", "data.crop_size=32", "model.generator.ngf=8", "model.discriminator.ndf=8",
        "model.discriminator.n_layers=2", "model.gan_mode=wgangp", "model.loss_weights.d_gp=10", tiny=False,
    )
    _check_penalty_reaches_only_the_discriminators(
        model, random_batches(2, batch_size=4, size=32, input_nc=3), ("G",), ("D",), ("d_gp",)
    )


# ---- a WGAN without its penalty is refused ----------------------------------------------------------
def _construction_error(*overrides: str, tiny: bool = True) -> ScheduleError:
    """The user error building the model raised (Hydra wraps it; the entry points unwrap it)."""
    with pytest.raises(InstantiationException) as error:
        build_model(*overrides, tiny=tiny)
    assert isinstance(error.value.__cause__, ScheduleError), error.value
    return error.value.__cause__


@pytest.mark.parametrize(
    "overrides, key",
    [
        (("model.gan_mode=wgangp",), "model.loss_weights.d_vae_gp=10 model.loss_weights.d_clr_gp=10"),
        (("model.gan_mode=wgangp", "model.loss_weights.d_vae_gp=10"), "model.loss_weights.d_clr_gp=10"),
        ((*SMALL_CYCLEGAN, "model.gan_mode=wgangp", "model.loss_weights.d_B_gp=10"), "model.loss_weights.d_A_gp=10"),
        (("model=travelgan", "model/siamese=learned", "model.gan_mode=wgangp"), "model.loss_weights.d_gp=10"),
    ],
)
def test_wgangp_without_penalty_is_refused_with_the_key_to_set(overrides, key):
    error = _construction_error(*overrides, tiny="model=cyclegan" not in overrides and "model=travelgan" not in overrides)
    assert "model.gan_mode=wgangp needs a gradient penalty" in str(error)
    assert f"set {key} " in str(error)


def test_wgangp_is_accepted_with_the_penalty_and_its_discriminator_term_off():
    # no critic loss, no critic to constrain: d_vae off needs no d_vae_gp
    build_model("model.gan_mode=wgangp", "model.loss_weights.d_vae=0", "model.loss_weights.d_clr_gp=10")


def test_penalty_with_compiled_networks_is_refused():
    error = _construction_error("model.compile=true", "model.loss_weights.d_clr_gp=10")
    assert "torch.compile does not support" in str(error)
    assert str(error).endswith("set model.compile=false or model.loss_weights.d_clr_gp=0")


def test_unknown_penalty_kind_is_refused():
    assert "model.gradient_penalty must be one of wgangp, r1, got 'r2'" in str(_construction_error("model.gradient_penalty=r2"))


def test_command_line_names_the_key_without_a_traceback(tmp_path):
    result = run_train("model.gan_mode=wgangp", "logger=csv", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr
    assert "model.loss_weights.d_vae_gp=10" in result.stderr
    assert "Traceback" not in result.stderr
