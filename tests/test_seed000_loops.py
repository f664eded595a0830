"""Seed 000's own training loops (REFERENCE_ALGORITHMS.md section 2.5), written out by hand as the
seed's files write them, reproduced bit for bit by their configs over 3 iterations.

The nets are the framework's (tiny); what is checked is the loop: which backward calls, into which
nets, which optimiser steps when, on which gradients. Each hand loop makes the iteration's random
draws as the system does (eps, then z_random, from the iteration's generator), since the seed's
own draws (randn_like inside its encoder) come from a different stream.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bicyclegan_pl.runtime.rng import iteration_rng
from tests.helpers import StepRecorder, build_model, clone, cpu_trainer, loader, random_batches

NO_DROPOUT = "model.generator.use_dropout=false"  # dropout draws would tie the loops to one forward order


def _adam(net: torch.nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=0.0002, betas=(0.5, 0.999))


def _mse_to(prediction: torch.Tensor, value: float) -> torch.Tensor:
    return F.mse_loss(prediction, torch.full_like(prediction, value))


def _draws(seed: int, iteration: int, size: int, nz: int):
    with iteration_rng(seed, 0, iteration, torch.device("cpu")) as generator:
        return torch.randn(size, nz, generator=generator), torch.randn(size, nz, generator=generator)


def _encode(E, real_B, eps):
    mu, logvar = E(real_B)
    return mu + eps * torch.exp(0.5 * logvar), mu, logvar


def _set_requires_grad(net: torch.nn.Module, flag: bool) -> None:
    for parameter in net.parameters():
        parameter.requires_grad = flag


def final_loop(nets, batches, seed, nz):
    """Variant A, ``src/train.py`` @53b1715e (the seed's final loop)."""
    G, E, D_VAE, D_LR = nets
    optimizer_G, optimizer_E, optimizer_D_VAE, optimizer_D_LR = (_adam(n) for n in nets)
    for iteration, batch in enumerate(batches):
        real_A, real_B = batch["A"], batch["B"]
        eps, z_random = _draws(seed, iteration, real_A.shape[0], nz)
        optimizer_E.zero_grad()
        optimizer_G.zero_grad()
        z_encoded, mu, logvar = _encode(E, real_B, eps)
        fake_B_vae = G(real_A, z_encoded)
        fake_B_clr = G(real_A, z_random)
        mu_clr, _ = E(fake_B_clr)
        vae_gan_loss = _mse_to(D_VAE(fake_B_vae), 1.0)
        clr_gan_loss = _mse_to(D_LR(fake_B_clr), 1.0)
        KLD_loss = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        cvaegan_l1 = F.l1_loss(fake_B_vae, real_B)
        G_loss = cvaegan_l1 * 10 + KLD_loss * 0.01 + vae_gan_loss + clr_gan_loss
        G_loss.backward(retain_graph=True)
        clrgan_l1 = F.l1_loss(mu_clr, z_random) * 0.5
        clrgan_l1.backward()  # E is not frozen: into E and G
        optimizer_E.step()
        optimizer_G.step()
        for D, optimizer, fake in ((D_VAE, optimizer_D_VAE, fake_B_vae), (D_LR, optimizer_D_LR, fake_B_clr)):
            optimizer.zero_grad()  # clears what the generator-side backward left in D
            loss = _mse_to(D(real_B), 1.0) + _mse_to(D(fake.detach()), 0.0)
            loss.backward()
            optimizer.step()
    return [optimizer_G, optimizer_E, optimizer_D_VAE, optimizer_D_LR]


def early_loop(nets, batches, seed, nz):
    """Variant B, the early ``train.py`` (commit f643a8b2), in its runnable reading: what follows
    G's step is computed with the updated G (as written, the second backward would go through
    graphs the first freed and weights the step changed in place)."""
    G, E, D_VAE, D_LR = nets
    optimizers = [_adam(n) for n in nets]
    optimizer_G, optimizer_E, optimizer_D_VAE, optimizer_D_LR = optimizers
    for iteration, batch in enumerate(batches):
        real_A, real_B = batch["A"], batch["B"]
        eps, z_random = _draws(seed, iteration, real_A.shape[0], nz)
        for optimizer in (optimizer_G, optimizer_E, optimizer_D_VAE, optimizer_D_LR):
            optimizer.zero_grad()
        mu_clr, _ = E(G(real_A, z_random))
        clrgan_l1 = F.l1_loss(mu_clr, z_random)  # unweighted
        clrgan_l1.backward()  # into G and E
        optimizer_G.step()
        z_encoded, mu, logvar = _encode(E, real_B, eps)
        fake_B_vae = G(real_A, z_encoded)
        fake_B_clr = G(real_A, z_random)
        cvaegan_l1 = F.l1_loss(fake_B_vae, real_B)
        KLD = (1 / 2) * (torch.sum(torch.exp(logvar) + mu.pow(2) - 1 - logvar))
        VAE_GAN_loss = _mse_to(D_VAE(fake_B_vae), 1.0)
        LR_GAN_loss = _mse_to(D_LR(fake_B_clr), 1.0)
        loss_GE = VAE_GAN_loss + LR_GAN_loss + cvaegan_l1 * 10 + KLD * 0.01
        loss_GE.backward()  # into E, G (never stepped on it) and both D
        optimizer_E.step()
        D_loss_cVAE = _mse_to(D_VAE(real_B), 1.0) + _mse_to(D_VAE(fake_B_vae.detach()), 0.0)
        D_loss_cVAE.backward()  # on top of VAE_GAN_loss's gradient in D_VAE
        optimizer_D_VAE.step()
        D_loss_cLRGAN = _mse_to(D_LR(real_B), 1.0) + _mse_to(D_LR(fake_B_clr.detach()), 0.0)
        D_loss_cLRGAN.backward()
        optimizer_D_LR.step()
    return optimizers


def train2_loop(nets, batches, seed, nz):
    """Variant D, ``src/train2.py`` @21e23b49: one discriminator, E frozen for the latent L1."""
    G, E, D = nets
    optimizer_G, optimizer_E, optimizer_D = (_adam(n) for n in nets)
    for iteration, batch in enumerate(batches):
        real_A, real_B = batch["A"], batch["B"]
        eps, z_random = _draws(seed, iteration, real_A.shape[0], nz)
        z_encoded, z_mu, z_logvar = _encode(E, real_B, eps)
        fake_B_encoded = G(real_A, z_encoded)
        fake_B_random = G(real_A, z_random)
        z_mu_predict, _ = E(fake_B_random)
        _set_requires_grad(D, False)
        optimizer_E.zero_grad()
        optimizer_G.zero_grad()
        vae_G_loss = _mse_to(D(fake_B_encoded), 1.0)
        clr_G_loss = _mse_to(D(fake_B_random), 1.0)
        kld_loss = -0.5 * torch.sum(1 + z_logvar - z_mu.pow(2) - z_logvar.exp())
        img_loss = F.l1_loss(fake_B_encoded, real_B)
        loss_G = vae_G_loss + clr_G_loss + 0.01 * kld_loss + 10 * img_loss
        loss_G.backward(retain_graph=True)
        _set_requires_grad(E, False)
        latent_loss = F.l1_loss(z_mu_predict, z_random) * 0.5
        latent_loss.backward()  # into G only
        _set_requires_grad(E, True)
        optimizer_E.step()
        optimizer_G.step()
        _set_requires_grad(D, True)
        optimizer_D.zero_grad()
        for fake in (fake_B_encoded, fake_B_random):
            loss = _mse_to(D(real_B), 1.0) + _mse_to(D(fake.detach()), 0.0)
            loss.backward()
        optimizer_D.step()
    return [optimizer_G, optimizer_E, optimizer_D]


LOOPS = {
    "bicycle_seed000_final": (final_loop, ["E", "G", "D_vae", "D_clr"]),
    "bicycle_order_b": (final_loop, ["E", "G", "D_vae", "D_clr"]),
    "bicycle_accum_4": (final_loop, ["E", "G", "D_vae", "D_clr"]),
    "bicycle_seed000_early": (early_loop, ["G", "E", "D_vae", "D_clr"]),
    "bicycle_order_a": (early_loop, ["G", "E", "D_vae", "D_clr"]),
    "bicycle_seed000_train2": (train2_loop, ["E", "G", "D"]),
}


@pytest.mark.parametrize("experiment", sorted(LOOPS))
def test_config_reproduces_the_seeds_loop_bit_for_bit(experiment):
    torch.manual_seed(0)
    model, cfg = build_model(f"+experiment={experiment}", NO_DROPOUT)
    nets = [clone(net) for net in model.optimizer_groups().values()]
    before = [clone(net) for net in nets]
    batches = random_batches(3, batch_size=2, size=cfg.data.crop_size, seed=1)
    recorder = StepRecorder()
    cpu_trainer(limit_train_batches=3, callbacks=[recorder]).fit(model, train_dataloaders=loader(batches))
    loop, order = LOOPS[experiment]
    assert recorder.order == order * 3
    hand_optimizers = loop(nets, batches, seed=cfg.seed, nz=cfg.model.nz)
    for (name, ours), theirs, initial in zip(model.optimizer_groups().items(), nets, before):
        moved = False
        for (key, a), b, c in zip(ours.state_dict().items(), theirs.state_dict().values(), initial.state_dict().values()):
            assert torch.equal(a, b), f"{experiment}: {name}.{key} differs from the seed's loop written by hand"
            moved |= not torch.equal(a, c)
        assert moved, f"{experiment}: {name} never moved, so the comparison shows nothing"
    for ours, theirs in zip(model.trainer.optimizers, hand_optimizers):
        for a, b in zip(ours.state_dict()["state"].values(), theirs.state_dict()["state"].values()):
            assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_the_loops_differ_from_each_other():
    """Guards the test above: the three loops are three different updates of the same nets."""
    finals = {}
    for experiment in ("bicycle_seed000_final", "bicycle_seed000_early", "bicycle_seed000_train2"):
        torch.manual_seed(0)
        model, cfg = build_model(f"+experiment={experiment}", NO_DROPOUT)
        batches = random_batches(2, batch_size=4, size=cfg.data.crop_size, seed=1)
        cpu_trainer(limit_train_batches=2).fit(model, train_dataloaders=loader(batches))
        finals[experiment] = torch.cat([p.detach().flatten() for p in model.encoder.parameters()])
    values = list(finals.values())
    assert not torch.equal(values[0], values[1]) and not torch.equal(values[0], values[2])
    assert not torch.equal(values[1], values[2])
