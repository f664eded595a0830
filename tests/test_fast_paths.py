"""GPU fast paths are config switches; on CPU each is at least exercised end to end."""
from __future__ import annotations

import pytest
import torch

from tests.helpers import build_model, clone, cpu_trainer, loader, random_batches


def _train(model, iterations: int = 2, **trainer_options):
    batches = random_batches(iterations, batch_size=2, size=32)
    cpu_trainer(limit_train_batches=iterations, **trainer_options).fit(model, train_dataloaders=loader(batches))
    return model


def _changed(before: torch.nn.Module, after: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values()))


def test_bf16_mixed_precision_trains_with_finite_losses():
    model, _ = build_model()
    initial = clone(model)
    _train(model, precision="bf16-mixed")
    assert model.iteration == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for name in ("generator", "encoder", "discriminator_vae", "discriminator_clr"):
        assert _changed(getattr(initial, name), getattr(model, name)), name


def test_channels_last_converts_weights_and_matches_default_layout():
    torch.manual_seed(0)
    model, _ = build_model("model.channels_last=true", "model.generator.use_dropout=false")
    reference = clone(model)
    reference.use_channels_last = False
    A, z = torch.rand(2, 1, 32, 32) * 2 - 1, torch.randn(2, model.nz)
    model.setup("fit")  # converts the weights to channels_last
    model.eval(), reference.eval()
    torch.testing.assert_close(model.translate(A, z), reference.translate(A, z), rtol=1e-4, atol=1e-5)
    _train(model)
    _train(reference)
    conv_weight = next(p for p in model.generator.parameters() if p.dim() == 4)
    assert conv_weight.is_contiguous(memory_format=torch.channels_last)
    # same update, different memory layout: Adam turns rounding noise in near-zero gradients
    # into steps of up to lr, so two steps may differ by at most 2 * 2 * lr = 8e-4
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=8e-4)


def test_compile_subnetworks_keeps_checkpoint_keys_and_trains():
    torch.manual_seed(0)
    model, _ = build_model("model.compile=true", "model.compile_backend=aot_eager")
    eager_keys = list(model.state_dict())
    initial = clone(model)
    _train(model)
    assert list(model.state_dict()) == eager_keys  # Module.compile: no `_orig_mod.` prefixes
    # torch has no public way to ask whether Module.compile() ran; its private slot is the witness
    assert model.generator._compiled_call_impl is not None
    for name in ("generator", "encoder", "discriminator_vae", "discriminator_clr"):
        assert _changed(getattr(initial, name), getattr(model, name)), name


def test_gradient_clipping_through_lightning_clips_every_stepped_optimiser(monkeypatch):
    model, _ = build_model("model.gradient_clip_val=0.001")
    norms = []
    from bicyclegan_pl.models import base

    real_step = base.ScheduledTranslationModule.step_optimizer

    def clipped_norms(self, name):
        real_clip = self.clip_gradients

        def spy(opt, gradient_clip_val=None, gradient_clip_algorithm=None):
            real_clip(opt, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm)
            grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

        monkeypatch.setattr(self, "clip_gradients", spy)
        try:
            real_step(self, name)
        finally:
            monkeypatch.setattr(self, "clip_gradients", real_clip)

    monkeypatch.setattr(base.ScheduledTranslationModule, "step_optimizer", clipped_norms)
    _train(model, iterations=1)
    assert len(norms) == 4  # G, E, D_vae, D_clr
    assert all(norm <= 0.001 * 1.0001 for norm in norms)


@pytest.mark.parametrize("mode", ["lsgan", "vanilla", "hinge", "wgangp"])
def test_every_gan_mode_trains(mode):
    # wgangp needs its gradient penalty (refused without it: tests/test_gradient_penalty.py)
    penalty = ("model.loss_weights.d_vae_gp=10", "model.loss_weights.d_clr_gp=10") if mode == "wgangp" else ()
    model, _ = build_model(f"model.gan_mode={mode}", *penalty)
    _train(model, iterations=1)
    assert model.iteration == 1 and all(torch.isfinite(p).all() for p in model.parameters())
