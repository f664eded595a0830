"""`python -m bicyclegan_pl.compare`: seed 004's table and grid, offline, on a colorization task built
from generated photos; and the judges it uses (metrics/style.py) against hand computations."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from bicyclegan_pl.compare import compare, task_images
from bicyclegan_pl.metrics.style import GramStyleDistance, luma, luma_ssim
from bicyclegan_pl.models.checkpoint import model_from_checkpoint
from tests.cli import run_train
from tests.helpers import compose_config


def write_photos(folder: Path, count: int) -> Path:
    """Colour 40x40 'photos': a coloured block on a gradient, each different."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = np.linspace(0, 255, 40, dtype=np.float32)[None, :, None].repeat(40, 0).repeat(3, 2)
        top, left = rng.integers(0, 24, size=2)
        pixels[top : top + 16, left : left + 16] = rng.integers(0, 256, size=3)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"photo_{index:02d}.png")
    return folder


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A colorization task (grayscale -> colour, 6 held-out photos), a tiny untrained CycleGAN
    checkpoint for it, and a weights folder with a random AlexNet (LPIPS's backbone) under its
    official file name."""
    root = tmp_path_factory.mktemp("compare")
    photos = write_photos(root / "photos", 12)
    data = [
        "data=colorization", f"data.root={photos}", "data.crop_size=32", "data.load_size=36",
        "data.holdout=0.5", "data.num_workers=0", "data.batch_size=4", "data.scan=false",
    ]
    cfg = compose_config(
        "model=cyclegan", *data, "model.generator.ngf=8", "model.generator.n_blocks=1", "model.discriminator.ndf=8",
        "model.discriminator.n_layers=1", "model.loss_weights.idt_A=0", "model.loss_weights.idt_B=0", tiny=False,
    )
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all")
    checkpoint = root / "cyclegan.ckpt"
    torch.save({"state_dict": model.state_dict(), "run_config": OmegaConf.to_container(cfg)}, checkpoint)
    style_cfg = compose_config(
        "model=arbitrary_style", *data, "model.style_predictor=tiny", "model.tiny_channels=8", "model.transfer_channels=8",
        "model.residual_blocks=1", "model.style_image_size=null", "model.style_augmentation=null",
        "model.loss_network.weights=null", tiny=False,
    )
    style_model = instantiate(style_cfg.model, _convert_="all")
    ghiasi = root / "ghiasi.ckpt"
    torch.save({"state_dict": style_model.state_dict(), "run_config": OmegaConf.to_container(style_cfg)}, ghiasi)
    weights = root / "weights" / "checkpoints"
    weights.mkdir(parents=True)
    from torchvision.models import AlexNet_Weights, alexnet

    torch.save(alexnet(weights=None).state_dict(), weights / AlexNet_Weights.DEFAULT.url.rsplit("/", 1)[-1])
    return {"root": root, "photos": photos, "cyclegan": checkpoint, "ghiasi": ghiasi, "weights": weights.parent}


def offline_settings(task: dict[str, Path], out_dir: Path) -> list[str]:
    return [
        f"cyclegan.ckpt={task['cyclegan']}", f"ghiasi.ckpt={task['ghiasi']}", "gatys.steps=3", "gatys.vgg.weights=null", "style_network.weights=null",
        "metrics/feature_extractor@feature_extractor=conv", f"paths.weights_dir={task['weights']}",
        "lpips.allow_download=false", "device=cpu", f"out_dir={out_dir}", "batch_size=4",
    ]


def test_compare_writes_one_table_and_grid_for_the_tasks_held_out_images(task, tmp_path):
    out_dir = tmp_path / "out"
    cfg = compose_config(*offline_settings(task, out_dir), config_name="compare", tiny=False)
    table = compare(cfg)

    assert list(table) == ["input", "gatys", "ghiasi", "cyclegan"]
    # the "do nothing" row: the input compared with itself
    assert table["input"]["lpips_to_input"] == pytest.approx(0.0, abs=1e-6)
    assert table["input"]["ssim_to_input"] == pytest.approx(1.0, abs=1e-4)
    for name in ("gatys", "ghiasi", "cyclegan"):
        assert table[name]["seconds_per_image"] > 0
        assert table[name]["lpips_to_input"] > 0
        assert np.isfinite([table[name][key] for key in ("fid", "kid_mean", "style_distance", "ssim_to_input")]).all()

    summary = json.loads((out_dir / "compare.json").read_text())
    # half of 12 photos held out: 6 grayscale contents, judged against the 6 colour photos
    assert len(summary["content"]) == 6 and len(summary["targets"]) == 6
    # a content's style reference is never its own colour photo (the answer to colorization)
    assert all(style != content for style, content in zip(summary["style"], summary["content"]))
    flat = json.loads((out_dir / "metrics.json").read_text())["metrics"]
    assert flat["cyclegan/fid"] == table["cyclegan"]["fid"]
    markdown = (out_dir / "compare.md").read_text()
    assert all(f"| {name} |" in markdown for name in ("input, unchanged", "gatys", "ghiasi", "cyclegan"))
    grid = Image.open(out_dir / "compare.png")
    # columns content | style | gatys | ghiasi | cyclegan, rows: the 6 contents (each image drawn at >= 96 px)
    assert grid.width > 5 * 96 and grid.height > 6 * 96
    # Ghiasi's column: the checkpoint's network on (the content as RGB, its style reference)
    saved = torch.load(out_dir / "outputs.pt")
    model, _ = model_from_checkpoint(task["ghiasi"])
    images = task_images(cfg, torch.load(task["cyclegan"], weights_only=False)["run_config"])
    assert torch.allclose(saved["ghiasi"], model.stylize(images["content"], images["style"]).clamp(-1, 1), atol=1e-5)


def test_cyclegan_column_is_the_checkpoints_generator(task, tmp_path):
    """The cyclegan method is G_A of the checkpoint on the 1-channel content, not a re-created net."""
    out_dir = tmp_path / "out"
    cfg = compose_config(*offline_settings(task, out_dir), "methods=[cyclegan]", config_name="compare", tiny=False)
    table = compare(cfg)
    saved = torch.load(out_dir / "outputs.pt")
    model, checkpoint = model_from_checkpoint(task["cyclegan"])
    images = task_images(cfg, checkpoint["run_config"])
    content = images["content"]
    assert content.shape == (6, 1, 32, 32)
    with torch.no_grad():
        expected = model.translate(content)
    assert torch.allclose(saved["cyclegan"], expected.clamp(-1, 1), atol=1e-6)
    assert torch.equal(saved["input"], content.expand(-1, 3, -1, -1))
    # colorization knows each content's answer, its own colour photo: judged against it too
    truth = images["truth"]
    assert images["content_paths"] == [images["target_paths"][i] for i in range(6)]
    assert (luma(truth) - content).abs().mean() < 0.01  # the grayscale input is the photo's luma (up to resampling)
    hand = ((saved["cyclegan"] - truth) / 2).abs().mean() * 255
    assert table["cyclegan"]["l1_to_truth"] == pytest.approx(float(hand), rel=1e-5)
    assert "L1 to truth" in (out_dir / "compare.md").read_text()


def test_gram_style_distance_by_hand():
    """With a 'VGG' that returns the image itself as relu1_1, the distance is the relative Frobenius
    distance of per-position Gram matrices to the target domain's mean Gram matrix."""

    class Identity(nn.Module):
        def forward(self, images):
            return {"relu1_1": images}

    targets, images = torch.randn(4, 3, 5, 5), torch.randn(2, 3, 5, 5)
    distance = GramStyleDistance(Identity(), layers=("relu1_1",)).fit(targets)(images)

    def gram(x):
        flat = x.double().reshape(3, 25)
        return flat @ flat.T / 25

    mean = sum(gram(t) for t in targets) / 4
    expected = [float((gram(x) - mean).norm() / mean.norm()) for x in images]
    assert distance.tolist() == pytest.approx(expected, rel=1e-5)
    # the target domain's mean statistics themselves are at distance 0 only for the mean; a target is not
    assert GramStyleDistance(Identity(), layers=("relu1_1",)).fit(targets[:1])(targets[:1]).item() == pytest.approx(0.0, abs=1e-6)


def test_luma_ssim_ignores_colour_and_sees_structure():
    torch.manual_seed(0)
    gray = torch.rand(2, 1, 32, 32) * 2 - 1
    # a colour image with the same luma: the grey repeated, then chroma that cancels in the luma
    colour = gray.repeat(1, 3, 1, 1) + torch.tensor([0.114, 0.0, -0.299]).view(1, 3, 1, 1) * 0.5
    assert torch.allclose(luma(colour), gray, atol=1e-6)
    assert luma_ssim(colour, gray).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert (luma_ssim(torch.rand(2, 3, 32, 32) * 2 - 1, gray) < 0.5).all()


def test_compare_user_errors_are_one_line_messages(task, tmp_path):
    missing = run_train("methods=[ghiasi]", "data=colorization", f"data.root={task['photos']}", f"out_dir={tmp_path}", module="bicyclegan_pl.compare")
    assert missing.returncode != 0
    assert "ghiasi.ckpt=" in missing.stderr and "Traceback" not in missing.stderr
    cfg = compose_config(*offline_settings(task, tmp_path), "methods=[gatys,magic]", config_name="compare", tiny=False)
    with pytest.raises(ValueError, match="unknown \\['magic'\\]"):
        compare(cfg)
    no_task = compose_config("methods=[gatys]", f"out_dir={tmp_path}", config_name="compare", tiny=False)
    with pytest.raises(ValueError, match="No task data"):
        compare(no_task)


def test_compare_reports_gatys_images_whose_optimisation_overflowed(task, tmp_path):
    """An absurd Adam step overflows every image's loss at step 1: each keeps its start (the content) and
    compare.json / compare.md name them, where NaN images would otherwise have turned every column to NaN."""
    out_dir = tmp_path / "out"
    overrides = [*offline_settings(task, out_dir), "methods=[gatys,cyclegan]", "gatys.optimizer=adam", "gatys.lr=1e30", "gatys.init=content"]
    table = compare(compose_config(*overrides, config_name="compare", tiny=False))
    assert np.isfinite(list(table["gatys"].values())).all()
    assert table["gatys"]["ssim_to_input"] == pytest.approx(1.0, abs=1e-4)  # each kept its content start
    assert json.loads((out_dir / "compare.json").read_text())["diverged"] == {"gatys": [0, 1, 2, 3, 4, 5]}
    assert "gatys: the optimisation of 6 image(s) overflowed and stopped early" in (out_dir / "compare.md").read_text()
