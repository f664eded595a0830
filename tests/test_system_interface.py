"""The hooks entry points and callbacks call on a system and a data module: declared on the base
classes with documented defaults, overridden where a system has the capability."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from bicyclegan_pl.data.appearance import appearance_palette
from bicyclegan_pl.data.datamodules import SyntheticPairedDataModule, SyntheticUnpairedDataModule
from bicyclegan_pl.models.base import ScheduledTranslationModule
from bicyclegan_pl.models.checkpoint import CheckpointError
from tests.helpers import CONF_DIR, build_model, random_batches

CYCLEGAN_TINY = [
    "+experiment=cyclegan_synthetic", "model.generator.ngf=8", "model.generator.n_blocks=2",
    "model.discriminator.ndf=8", "model.discriminator.n_layers=2", "data.crop_size=32",
]


class Minimal(ScheduledTranslationModule):
    """A system that defines only what every system must: its outputs."""

    def __init__(self) -> None:
        super().__init__(schedule=[], loss_weights={}, optimizer=torch.optim.Adam)
        self.net = nn.Conv2d(1, 3, 1)

    def sample_outputs(self, batch, num_samples, generator):
        output = self.net(batch["A"])
        return output + torch.randn(num_samples, *output.shape, generator=generator)


def test_a_minimal_system_gets_the_documented_defaults():
    model = Minimal()
    batch = random_batches(1, 2, size=8)[0]
    assert model.deterministic is False and model.has_semantic_space is False and model.run_config is None
    assert model.has_encoder is False
    with pytest.raises(NotImplementedError, match="Minimal has no encoder"):
        model.reconstruct(batch)
    assert model.evaluation_directions() == {"": (None, "B")}  # one unnamed direction: bare metric keys
    columns = model.sample_columns(batch, 3, torch.Generator().manual_seed(0))
    assert [title for title, _ in columns] == ["input", "target", "sample 1", "sample 2", "sample 3"]
    assert torch.equal(columns[0][1], batch["A"]) and columns[2][1].shape == (2, 3, 8, 8)
    assert model.latent_size is None
    with pytest.raises(NotImplementedError, match="Minimal has no latent code"):
        model.generate(batch["A"], torch.zeros(2, 8))
    with pytest.raises(NotImplementedError, match="Minimal has no Siamese space"):
        model.semantic_embeddings(batch["A"])
    Minimal.deterministic = True
    try:
        assert [title for title, _ in model.sample_columns(batch, 3, torch.Generator())] == ["input", "target", "output"]
    finally:
        Minimal.deterministic = False


def test_systems_declare_their_capabilities():
    bicyclegan, _ = build_model()
    cyclegan, _ = build_model(*CYCLEGAN_TINY, tiny=False)
    assert bicyclegan.latent_size == bicyclegan.nz == 8 and not bicyclegan.deterministic
    assert cyclegan.latent_size is None and cyclegan.deterministic and not cyclegan.has_semantic_space
    assert list(cyclegan.evaluation_directions()) == ["AtoB", "BtoA"]
    # generate is the differentiable path guidance ascends; translate the same outputs without a graph
    real_A = random_batches(1, 2, size=32)[0]["A"]
    z = torch.randn(2, 8, requires_grad=True)
    output = bicyclegan.eval().generate(real_A, z)
    output.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert torch.equal(bicyclegan.translate(real_A, z), output.detach())


def test_only_data_with_known_appearances_has_a_palette():
    assert torch.equal(SyntheticPairedDataModule(num_appearances=3).palette, appearance_palette(3))
    assert SyntheticUnpairedDataModule().palette is None


def test_guide_asks_the_system_for_a_latent_code(tmp_path):
    """A CycleGAN checkpoint is refused through ``latent_size`` before CLIP is loaded."""
    from bicyclegan_pl.guide import guide

    model, cfg = build_model(*CYCLEGAN_TINY, tiny=False)
    checkpoint = tmp_path / "cyclegan.ckpt"
    torch.save({"state_dict": model.state_dict(), "run_config": OmegaConf.to_container(cfg)}, checkpoint)
    Image.new("RGB", (32, 32), "white").save(tmp_path / "input.png")
    settings = OmegaConf.load(Path(CONF_DIR) / "guide.yaml")
    settings.merge_with({
        "ckpt": str(checkpoint), "input": str(tmp_path / "input.png"), "prompt": "a red shoe", "device": "cpu",
        "out_dir": str(tmp_path / "out"), "clip": {"model": str(tmp_path / "no_clip_here")},
    })
    with pytest.raises(CheckpointError, match="holds a CycleGAN; guidance needs a model with a latent code"):
        guide(settings)
