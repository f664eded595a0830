"""The unconditional GAN trainer (models.gan): rosinality's order and draws reproduced by a
hand-written loop, lazy R1 on every 16th iteration, the EMA generator, the DCGAN nets, and the
synthetic-objects data it trains on."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bicyclegan_pl.data.captions import ATTRIBUTES, named_attributes
from bicyclegan_pl.data.datamodules import SyntheticObjectsDataModule
from bicyclegan_pl.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from bicyclegan_pl.runtime.rng import iteration_rng
from tests.helpers import StepRecorder, build_model, cpu_trainer, resumed_and_uninterrupted

SMALL_DCGAN = ("+experiment=dcgan_synthetic", "model.generator.ngf=8", "model.discriminator.ndf=8", "model.generator.z_dim=16")


def _real_batches(count: int, batch_size: int = 4, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [{"B": torch.rand(batch_size, 3, 32, 32, generator=generator) * 2 - 1} for _ in range(count)]


def _loader(batches: list[dict[str, torch.Tensor]]) -> DataLoader:
    items = [{"B": batch["B"][i]} for batch in batches for i in range(len(batch["B"]))]
    return DataLoader(items, batch_size=len(batches[0]["B"]), shuffle=False)


def test_dcgan_nets_have_the_papers_shapes():
    generator = DCGANGenerator(image_size=32, z_dim=16, ngf=8)
    images = generator(torch.randn(3, 16))
    assert images.shape == (3, 3, 32, 32) and images.abs().max() <= 1.0
    assert generator.latent_shape == (16,) and torch.equal(generator.synthesize(torch.zeros(2, 16)), generator(torch.zeros(2, 16)))
    # widths halve per level from 8 * ngf capped (32 px: 4 -> 8 -> 16 -> 32, widths 32, 16, 8)
    widths = [m.out_channels for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == [32, 16, 8, 3]
    assert DCGANDiscriminator(image_size=32, ndf=8)(images).shape == (3, 1)
    with pytest.raises(ValueError, match="power of two"):
        DCGANGenerator(image_size=48)
    with pytest.raises(ValueError, match="no style mixing"):
        generator(torch.randn(2, 16), torch.randn(2, 16), 1)


def test_one_iteration_is_rosinalitys_loop_d_then_r1_then_g_on_fresh_z():
    """Engine iteration 0 (R1 is due) against a hand-written loop: D on (real, G(z1)) with the
    logistic loss, D again on the R1 penalty, G on softplus(-D(G(z2))) with fresh z, then the EMA."""
    torch.manual_seed(0)
    model, cfg = build_model(*SMALL_DCGAN, "model.loss_weights.d_r1=5", tiny=False)
    generator, discriminator, ema = (copy.deepcopy(net) for net in (model.generator, model.discriminator, model.generator_ema))
    batch = _real_batches(1)[0]
    trainer = cpu_trainer(limit_train_batches=1)
    trainer.fit(model, train_dataloaders=_loader([batch]))
    assert model.iteration == 1

    with iteration_rng(model.seed, 0, 0, torch.device("cpu")) as draws:
        z_d, z_g = torch.randn(4, 16, generator=draws), torch.randn(4, 16, generator=draws)
    adam = dict(lr=cfg.model.optimizer.lr, betas=tuple(cfg.model.optimizer.betas))
    optimizer_g, optimizer_d = torch.optim.Adam(generator.parameters(), **adam), torch.optim.Adam(discriminator.parameters(), **adam)
    real = batch["B"]
    fake = generator(z_d).detach()
    loss_d = F.softplus(discriminator(fake)).mean() + F.softplus(-discriminator(real)).mean()
    optimizer_d.zero_grad()
    loss_d.backward()
    optimizer_d.step()
    real_r1 = real.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(discriminator(real_r1).sum(), real_r1, create_graph=True)
    optimizer_d.zero_grad()
    (5.0 * gradient.pow(2).flatten(1).sum(1).mean()).backward()
    optimizer_d.step()
    loss_g = F.softplus(-discriminator(generator(z_g))).mean()
    optimizer_g.zero_grad()
    loss_g.backward()
    optimizer_g.step()

    for name, expected, actual in (("D", discriminator, model.discriminator), ("G", generator, model.generator)):
        for key, value in expected.state_dict().items():
            assert torch.allclose(value.float(), actual.state_dict()[key].float(), atol=1e-6), f"{name} {key}"
    decay = model.ema_decay
    for (key, average), current in zip(ema.named_parameters(), generator.parameters()):
        assert torch.allclose(model.generator_ema.state_dict()[key], decay * average + (1 - decay) * current, atol=1e-7), key
    for key, buffer in generator.named_buffers():
        assert torch.equal(model.generator_ema.state_dict()[key], buffer), key


def test_r1_phase_runs_on_every_16th_iteration_only():
    model, _ = build_model(*SMALL_DCGAN, "model.loss_weights.d_r1=5", tiny=False)
    recorder = StepRecorder()
    trainer = cpu_trainer(limit_train_batches=17, callbacks=[recorder])
    trainer.fit(model, train_dataloaders=_loader(_real_batches(17)))
    order = recorder.order
    # iteration 0 and 16: D, D (R1), G; the 15 in between: D, G
    assert order == ["D", "D", "G"] + ["D", "G"] * 15 + ["D", "D", "G"]


def test_the_ema_generator_is_checkpointed_and_never_trained():
    model, _ = build_model(*SMALL_DCGAN, tiny=False)
    assert all(not p.requires_grad for p in model.generator_ema.parameters())
    assert list(model.optimizer_groups()) == ["G", "D"]
    keys = model.state_dict().keys()
    assert any(key.startswith("generator_ema.") for key in keys)
    samples = model.sample_outputs({"B": torch.zeros(5, 3, 32, 32)}, 2, torch.Generator().manual_seed(0))
    assert samples.shape == (2, 5, 3, 32, 32)
    again = model.sample_outputs({"B": torch.zeros(5, 3, 32, 32)}, 2, torch.Generator().manual_seed(0))
    assert torch.equal(samples, again) and not torch.equal(samples[0], samples[1])


def test_style_mixing_and_wgangp_are_refused_where_they_cannot_work():
    with pytest.raises(Exception, match="no style mixing"):
        build_model(*SMALL_DCGAN, "model.mixing=0.9", tiny=False)
    with pytest.raises(Exception, match="wgangp"):
        build_model(*SMALL_DCGAN, "model.gan_mode=wgangp", tiny=False)


def test_synthetic_objects_are_images_with_true_captions():
    data = SyntheticObjectsDataModule(crop_size=32, train_size=64, val_size=16, batch_size=8)
    data.setup("fit")
    item = data.train_set[3]
    assert item["B"].shape == (3, 32, 32) and item["B"].min() >= -1 and item["B"].max() <= 1
    for name, value in named_attributes(item["caption"]).items():
        assert ATTRIBUTES[name].index(value) == int(item[name]), (item["caption"], name)
    batch = next(iter(data.train_dataloader()))
    assert batch["B"].shape == (8, 3, 32, 32) and len(batch["caption"]) == 8
    # drawn at crop_size: the object is flat colour on white, so few distinct colours
    assert len(torch.unique(item["B"].flatten(1), dim=1).T) <= 4


def test_stylegan2_trains_through_the_same_engine_with_mixing_and_lazy_r1():
    """One iteration of stylegan2_synthetic on a tiny StyleGAN2: D, R1 (iteration 0), then G, each net
    moves, the EMA generator follows, and the adapter keeps rosinality's state-dict keys."""
    from bicyclegan_pl.nets.stylegan2 import StyleGAN2, StyleGAN2Generator

    torch.manual_seed(0)
    tiny = ("+experiment=stylegan2_synthetic", "model.generator.style_dim=16", "model.generator.n_mlp=2",
            "model.generator.max_channels=8", "model.discriminator.max_channels=8")
    model, _ = build_model(*tiny, tiny=False)
    assert isinstance(model.generator, StyleGAN2) and model.generator.latent_shape == (8, 16)
    plain = StyleGAN2Generator(32, style_dim=16, n_mlp=2, max_channels=8)
    assert list(model.generator.state_dict()) == list(plain.state_dict())
    before = {name: copy.deepcopy(net.state_dict()) for name, net in (("G", model.generator), ("D", model.discriminator))}
    ema_before = copy.deepcopy(model.generator_ema.state_dict())
    recorder = StepRecorder()
    cpu_trainer(limit_train_batches=1, callbacks=[recorder]).fit(model, train_dataloaders=_loader(_real_batches(1)))
    assert recorder.order == ["D", "D", "G"]
    for name, net in (("G", model.generator), ("D", model.discriminator)):
        assert any(not torch.equal(before[name][k], v) for k, v in net.state_dict().items()), f"{name} did not move"
    assert any(not torch.equal(ema_before[k], v) for k, v in model.generator_ema.state_dict().items())
    mixed = model.generator(torch.randn(2, 16), torch.randn(2, 16), 3)
    assert mixed.shape == (2, 3, 32, 32)


def test_the_object_judge_reads_real_objects_and_knows_a_blank_image():
    from bicyclegan_pl.metrics.object_judge import ObjectJudge, attribute_hits

    judge = ObjectJudge(32, bank_size=3000)
    accuracy = judge.accuracy_on_real(200)
    assert accuracy["colour"] == 1.0  # the palette is known exactly
    assert accuracy["family"] > 0.7  # nearest-mask families: the judge's ceiling, reported with its readings (chance 1/6)
    blank = torch.ones(2, 3, 32, 32)
    assert judge.colours(blank).tolist() == [-1, -1]
    readings = {"colour": torch.tensor([0, 0, 1, 2]), "family": torch.tensor([5, 5, 5, 0])}
    hits = attribute_hits(readings, ["a red star", "a green object"], [{"colour": "red", "family": "star"}, {"colour": "green"}])
    assert hits == {"colour": [True, True, True, False], "family": [True, True]}


def test_resume_equals_an_uninterrupted_run_ema_included(tmp_path):
    """Lazy R1 (every 16) and the EMA across a resume: 2 epochs of 10 iterations in one go, or 1 +
    resume + 1, give the same G, D, EMA and optimiser states."""
    torch.manual_seed(0)
    initial, _ = build_model(*SMALL_DCGAN, "model.loss_weights.d_r1=5", tiny=False)
    data = SyntheticObjectsDataModule(crop_size=32, train_size=40, val_size=8, batch_size=4, seed=3)

    def fit(model, epochs, ckpt_path=None):
        trainer = cpu_trainer(max_epochs=epochs)
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
        return trainer

    (uninterrupted, full), (resumed, again) = resumed_and_uninterrupted(initial, fit, tmp_path / "half.ckpt")
    assert resumed.iteration == uninterrupted.iteration == 20
    for ours, theirs in zip(full.optimizers, again.optimizers):
        for a, b in zip(ours.state_dict()["state"].values(), theirs.state_dict()["state"].values()):
            assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])
    assert [int(o.state_dict()["state"][0]["step"]) for o in again.optimizers] == [20, 20 + 2]  # G; D plus R1 at 0 and 16
