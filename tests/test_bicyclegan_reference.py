"""The schedule engine reproduces a hand-written loop of the junyanz update bit for bit."""
from __future__ import annotations

import torch

from bicyclegan_pl.runtime.rng import iteration_rng
from tests.helpers import build_model, clone, cpu_trainer, loader, random_batches


# the reference nets (3-layer 2-scale PatchGANs need 64 px), narrow so the test is fast
REFERENCE_AT_64PX = (
    "+experiment=bicycle_reference",
    "model.generator.ngf=8",
    "model.encoder.nef=8",
    "model.discriminator.ndf=8",
    "data.crop_size=64",
)


def _set_requires_grad(nets, flag: bool) -> None:
    for net in nets:
        for parameter in net.parameters():
            parameter.requires_grad = flag


def _gan_loss(predictions, target_is_real: bool):
    # junyanz GANLoss (lsgan) over a list of scales, summed with Python's sum
    losses = []
    for prediction in predictions:
        target = torch.tensor(1.0 if target_is_real else 0.0).expand_as(prediction)
        losses.append(torch.nn.MSELoss()(prediction, target))
    return sum(losses)


def reference_loop(G, E, D, D2, batches, seed: int, nz: int, weights: dict[str, float]) -> list[torch.optim.Optimizer]:
    """junyanz/BicycleGAN ``models/bicycle_gan_model.py`` optimize_parameters() (with forward,
    backward_EG and backward_D), written out by hand."""
    make = lambda net: torch.optim.Adam(net.parameters(), lr=0.0002, betas=(0.5, 0.999))  # noqa: E731
    opt_G, opt_E, opt_D, opt_D2 = make(G), make(E), make(D), make(D2)
    for iteration, batch in enumerate(batches):
        with iteration_rng(seed, 0, iteration, torch.device("cpu")) as generator:
            half = batch["A"].shape[0] // 2
            real_A_encoded, real_B_encoded = batch["A"][:half], batch["B"][:half]
            real_B_random = batch["B"][half:]
            eps = torch.randn(half, nz, generator=generator)
            z_random = torch.randn(half, nz, generator=generator)
            # forward()
            mu, logvar = E(real_B_encoded)
            std = logvar.mul(0.5).exp_()
            z_encoded = eps.mul(std).add_(mu)
            fake_B_encoded = G(real_A_encoded, z_encoded)
            fake_B_random = G(real_A_encoded, z_random)
            mu2, _ = E(fake_B_random)
            # update_G_and_E()
            _set_requires_grad([D, D2], False)
            opt_E.zero_grad()
            opt_G.zero_grad()
            loss_G_GAN = _gan_loss(D(fake_B_encoded), True) * weights["vae_gan"]
            loss_G_GAN2 = _gan_loss(D2(fake_B_random), True) * weights["clr_gan"]
            kl_element = mu.pow(2).add_(logvar.exp()).mul_(-1).add_(1).add_(logvar)
            loss_kl = torch.sum(kl_element).mul_(-0.5) * weights["kl"]
            loss_G_L1 = torch.nn.L1Loss()(fake_B_encoded, real_B_encoded) * weights["vae_l1"]
            (loss_G_GAN + loss_G_GAN2 + loss_G_L1 + loss_kl).backward(retain_graph=True)
            _set_requires_grad([E], False)
            loss_z_L1 = torch.mean(torch.abs(mu2 - z_random)) * weights["clr_latent"]
            loss_z_L1.backward()
            _set_requires_grad([E], True)
            opt_E.step()
            opt_G.step()
            # update_D()
            _set_requires_grad([D, D2], True)
            for net, optimizer, fake, real in ((D, opt_D, fake_B_encoded, real_B_encoded), (D2, opt_D2, fake_B_random, real_B_random)):
                optimizer.zero_grad()
                loss_D = _gan_loss(net(fake.detach()), False) + _gan_loss(net(real), True)
                loss_D.backward()
                optimizer.step()
    return [opt_G, opt_E, opt_D, opt_D2]


def test_reference_schedule_is_bit_identical_to_hand_written_loop():
    torch.manual_seed(0)
    model, cfg = build_model(*REFERENCE_AT_64PX, tiny=False)
    nets = [clone(model.generator), clone(model.encoder), clone(model.discriminator_vae), clone(model.discriminator_clr)]
    batches = random_batches(3, batch_size=2, size=64, seed=1)

    cpu_trainer(limit_train_batches=3).fit(model, train_dataloaders=loader(batches))
    assert model.iteration == 3

    reference_optimizers = reference_loop(*nets, batches, seed=cfg.seed, nz=cfg.model.nz, weights=cfg.model.loss_weights)
    engine_nets = [model.generator, model.encoder, model.discriminator_vae, model.discriminator_clr]
    for name, ours, theirs in zip(["G", "E", "D_vae", "D_clr"], engine_nets, nets):
        for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key} differs from the hand-written reference loop"
    # and the optimisers' moments too
    for ours, theirs in zip(model.trainer.optimizers, reference_optimizers):
        for a, b in zip(ours.state_dict()["state"].values(), theirs.state_dict()["state"].values()):
            assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_reference_parameters_actually_moved():
    """Guards the test above against comparing two untouched copies."""
    model, _ = build_model(*REFERENCE_AT_64PX, tiny=False)
    before = clone(model.generator).state_dict()
    cpu_trainer(limit_train_batches=2).fit(model, train_dataloaders=loader(random_batches(2, 2, size=64)))
    assert any(not torch.equal(before[k], v) for k, v in model.generator.state_dict().items())
