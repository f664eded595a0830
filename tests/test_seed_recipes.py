"""Seed 001's recipes as built: a BicycleGAN whose two discriminators judge whole 128 px RGB images
(one score each, the seed's "vanilla discriminator"), its generators (U-Net; the baseline's
"vanilla generator" without skips), Table 1's learning rates, and a configured trainer that
trains 20 epochs."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from bicyclegan_pl.nets import GlobalDiscriminator, PlainGenerator, UnetGenerator
from tests.helpers import build_model, loader, random_batches

SEED001 = [("bicycle_seed001", UnetGenerator), ("bicycle_seed001_baseline", PlainGenerator)]


@pytest.mark.parametrize(("experiment", "generator_class"), SEED001)
def test_seed001_judges_whole_128px_rgb_images_with_both_discriminators(experiment, generator_class):
    model, _ = build_model(f"+experiment={experiment}", tiny=False)
    assert type(model.generator) is generator_class
    images = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        assert model.generate(images, torch.randn(2, model.latent_size)).shape == (2, 3, 128, 128)
        for discriminator in (model.discriminator_vae, model.discriminator_clr):
            assert isinstance(discriminator, GlobalDiscriminator)
            assert discriminator(images).shape == (2, 1)  # one score per image, not a patch map


class EpochsAndRates(L.Callback):
    """The learning rate each optimiser starts with, and how many training epochs ended."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rates = {o.param_groups[0]["name"]: o.param_groups[0]["lr"] for o in trainer.optimizers}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs += 1


def _configured_trainer(cfg, tmp_path, **options) -> L.Trainer:
    """The trainer ``train`` builds from ``cfg.trainer``, on the CPU, without loggers or checkpoints."""
    return instantiate(
        cfg.trainer, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path), **options,
    )


def test_seed001_trains_20_epochs_at_table_1_rates_with_the_configured_trainer(tmp_path):
    """The run's own trainer (one tiny batch per epoch): "training on 20 epochs", E 5e-6, G 8e-4,
    both discriminators 4e-7 (Table 1). The baseline's trainer is the same."""
    model, cfg = build_model("+experiment=bicycle_seed001")
    seen = EpochsAndRates()
    trainer = _configured_trainer(cfg, tmp_path, callbacks=[seen], limit_train_batches=1)
    trainer.fit(model, train_dataloaders=loader(random_batches(1, 4, size=cfg.data.crop_size, input_nc=3)))
    assert seen.epochs == 20 and model.iteration == 20
    assert seen.rates == pytest.approx({"G": 8e-4, "E": 5e-6, "D_vae": 4e-7, "D_clr": 4e-7})
    _, baseline = build_model("+experiment=bicycle_seed001_baseline")
    assert _configured_trainer(baseline, tmp_path).max_epochs == trainer.max_epochs == 20
