"""Gatys et al.'s neural style transfer (seed 004's first baseline): the Gram matrix and the paper's
losses against hand computations, the VGG feature extractor against torchvision's, the per-image
optimisation (losses fall; a batch equals its images one by one) and the stylize command, offline:
randomly initialised VGG-19 through the same code path as the ImageNet weights."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers
from torchvision.utils import save_image

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.losses.style import content_loss, gram_matrix, layer_style_loss, style_loss
from bicyclegan_pl.weights import WeightsNotFoundError
from bicyclegan_pl.nets.vgg import VGGFeatures
from bicyclegan_pl.style_transfer.gatys import GatysSettings, gatys_stylize
from bicyclegan_pl.stylize import stylize
from tests.cli import run_train
from tests.helpers import compose_config

SIZE = 32


@pytest.fixture(scope="module")
def vgg() -> VGGFeatures:
    torch.manual_seed(0)
    return VGGFeatures(layers=GatysSettings().layers, pooling="avg", weights=None)


def smooth_images(count: int, seed: int) -> torch.Tensor:
    """Images with structure at several scales (upsampled noise), in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, SIZE // 8, SIZE // 8, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False)


def test_gram_matrix_and_the_papers_losses_equal_a_hand_computation():
    features = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)  # N = 2, M = 4
    expected = torch.tensor([[[30.0, -2.0], [-2.0, 2.0]]])
    assert torch.equal(gram_matrix(features), expected)
    assert torch.equal(gram_matrix(features, "positions"), expected / 4)
    assert torch.equal(gram_matrix(features, "elements"), expected / 8)
    # E_l = sum (G - A)^2 / (4 N^2 M^2) with A = 0: (900 + 4 + 4 + 4) / (4 * 4 * 16)
    assert layer_style_loss(features, torch.zeros(1, 2, 2)).item() == pytest.approx(912 / 256)
    assert layer_style_loss(features, expected).item() == 0.0
    weighted = style_loss({"a": features, "b": features}, {"a": torch.zeros(1, 2, 2), "b": expected}, {"a": 0.5, "b": 1.0})
    assert weighted.item() == pytest.approx(0.5 * 912 / 256)
    # L_content = 1/2 sum (F - P)^2, per image
    pair = torch.stack([features[0], features[0] + 1])
    assert content_loss(pair, features).tolist() == [0.0, 0.5 * 8]


def test_vgg_features_are_named_shaped_and_equal_torchvisions_vgg19(tmp_path):
    torch.manual_seed(0)
    reference = make_layers(cfgs["E"])  # torchvision's vgg19().features
    torch.save({f"features.{key}": value for key, value in reference.state_dict().items()}, tmp_path / "vgg19.pth")
    layers = ["conv1_1", "relu1_2", "pool1", "relu3_1", "conv4_2"]
    vgg = VGGFeatures(layers=layers, weights=str(tmp_path / "vgg19.pth"))
    images = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    found = vgg(images)
    assert list(found) == layers
    assert [tuple(found[name].shape) for name in layers] == [(2, 64, 32, 32), (2, 64, 32, 32), (2, 64, 16, 16), (2, 256, 8, 8), (2, 512, 4, 4)]
    assert len(vgg.features) == 22  # built up to conv4_2 (torchvision's features[21]) only
    assert not any(parameter.requires_grad for parameter in vgg.parameters())
    assert not vgg.train().training  # a frozen extractor stays in eval mode
    normalised = ((images + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(found["relu3_1"], reference[:12](normalised), atol=1e-5)
        assert torch.allclose(found["conv1_1"], reference[0](normalised), atol=1e-6)
    with pytest.raises(UserError, match="no \\['relu5_4'\\]"):
        VGGFeatures(arch="vgg16", layers=["relu5_4"], weights=None)
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "half_gatys.pth")  # Gatys's names, incomplete
    with pytest.raises(UserError, match="half_gatys.pth is not a vgg19 state dict.*it lacks conv1_1.bias, conv1_2.weight, conv1_2.bias and more"):
        VGGFeatures(layers=layers, weights=str(tmp_path / "half_gatys.pth"))
    with pytest.raises(WeightsNotFoundError, match="nowhere.pth does not exist"):
        VGGFeatures(layers=layers, weights=str(tmp_path / "nowhere.pth"))


def caffe_input(images: torch.Tensor) -> torch.Tensor:
    """Caffe's VGG input by hand: RGB in [-1, 1] -> BGR pixels 0-255 minus the BGR ImageNet mean."""
    pixels = (images + 1) / 2 * 255
    bgr = torch.stack([pixels[:, 2], pixels[:, 1], pixels[:, 0]], dim=1)
    return bgr - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)


def test_the_papers_caffe_networks_load_by_name_and_are_fed_caffes_input(tmp_path, monkeypatch):
    """weights=gatys (Gatys et al.'s vgg_conv.pth, their conv1_1.weight keys) and weights=caffe (Johnson's
    conversion, torchvision's keys) load from paths.weights_dir by their published names and see BGR 0-255
    pixels minus the mean; imagenet and random weights see normalised RGB unless told otherwise."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    torch.manual_seed(0)
    reference = make_layers(cfgs["E"])[:4]  # conv1_1, relu1_1, conv1_2, relu1_2
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    gatys_state = {"conv1_1.weight": reference[0].weight, "conv1_1.bias": reference[0].bias,
                   "conv1_2.weight": reference[2].weight, "conv1_2.bias": reference[2].bias}
    torch.save(gatys_state, weights_dir / "vgg_conv.pth")
    torch.save({f"features.{key}": value for key, value in reference.state_dict().items()}, weights_dir / "vgg19-d01eb7cb.pth")
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        expected = reference(caffe_input(images))
        normalised = ((images + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        for weights in ("gatys", "caffe", str(weights_dir / "vgg_conv.pth")):
            vgg = VGGFeatures(layers=["relu1_2"], weights=weights, weights_dir=weights_dir)
            assert vgg.preprocessing == "caffe"
            assert torch.allclose(vgg(images)["relu1_2"], expected, rtol=1e-5, atol=1e-3)
        # the same file forced to torchvision's input gives torchvision's features of it
        forced = VGGFeatures(layers=["relu1_2"], weights="gatys", weights_dir=weights_dir, preprocessing="torchvision")
        assert torch.allclose(forced(images)["relu1_2"], reference(normalised), atol=1e-5)
        # a path in torchvision's layout is fed as torchvision trains; random weights likewise unless told
        path = VGGFeatures(layers=["relu1_2"], weights=str(weights_dir / "vgg19-d01eb7cb.pth"))
        assert path.preprocessing == "torchvision"
        assert VGGFeatures(layers=["relu1_2"], weights=None).preprocessing == "torchvision"
        random_caffe = VGGFeatures(layers=["conv1_1"], weights=None, preprocessing="caffe")
        assert torch.allclose(random_caffe(images)["conv1_1"], random_caffe.features[0](caffe_input(images)), rtol=1e-5, atol=1e-3)
    # gatys exists for VGG-19 only; a missing named file names itself, its URL and the folder
    with pytest.raises(UserError, match="weights='gatys' exist for vgg19 only, not arch='vgg16'"):
        VGGFeatures(arch="vgg16", layers=["relu1_2"], weights="gatys", weights_dir=weights_dir)
    with pytest.raises(WeightsNotFoundError, match="vgg16-00b39a1b.pth was not found") as missing:
        VGGFeatures(arch="vgg16", layers=["relu1_2"], weights="caffe", weights_dir=weights_dir)
    assert "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth" in str(missing.value)
    with pytest.raises(UserError, match="preprocessing='bgr': choose from auto, torchvision, caffe"):
        VGGFeatures(layers=["relu1_2"], weights=None, preprocessing="bgr")


def test_an_image_whose_loss_overflows_keeps_its_last_finite_image_and_the_others_go_on(vgg):
    """Image 0 starts at its own optimum (content = style = start: zero loss and gradient) and never
    moves; image 1 is thrown out of range by an absurd step, so its loss overflows at step 1: it gets
    its best image (step 0's) back, stops, and says so, while image 0 runs all its steps."""
    content = smooth_images(2, seed=11)
    style = torch.stack([content[0], smooth_images(1, seed=12)[0]])
    settings = GatysSettings(optimizer="adam", lr=1e30, steps=4, init="content")
    result = gatys_stylize(vgg, content, style, settings, progress=False)
    kept, diverged = result.details
    assert diverged["diverged_at_step"] == 1 and diverged["kept_step"] == 0 and len(diverged["total_loss_per_step"]) == 1
    assert torch.equal(result.images[1], content[1].clamp(-1, 1))
    assert kept["diverged_at_step"] is None and kept["total_loss_per_step"] == [0.0] * 4
    assert torch.equal(result.images[0], content[0].clamp(-1, 1))
    assert all(math.isfinite(value) for detail in result.details for value in detail["loss_end"].values())


@pytest.mark.parametrize("preprocessing", ["torchvision", "caffe"])
def test_gatys_normalisation_gives_every_filter_a_mean_activation_of_one(preprocessing):
    """After normalize_activations(images) every rectified feature is the old one divided by its filter's
    mean over those images and positions (so those means are now one); a raw convolution at the top
    (conv2_2, whose ReLU is not built) is rescaled by the mean of its rectified output."""
    torch.manual_seed(0)
    layers = ["relu1_1", "relu1_2", "pool1", "relu2_1", "conv2_2"]
    vgg = VGGFeatures(layers=layers, weights=None, preprocessing=preprocessing)
    images = smooth_images(6, seed=3)
    with torch.no_grad():
        before = vgg(images)
        vgg.normalize_activations(images, batch_size=4)  # two batches: the means are over all six images
        after = vgg(images)
    means = {name: before[name].relu().mean(dim=(0, 2, 3)) for name in ["relu1_1", "relu1_2", "relu2_1", "conv2_2"]}
    for name, mean in means.items():
        live = mean > 0  # filters that never fire on these images keep their scale
        assert live.float().mean() > 0.5, name
        divisor = torch.where(live, mean, torch.ones_like(mean)).view(1, -1, 1, 1)
        assert torch.allclose(after[name], before[name] / divisor, rtol=1e-4, atol=1e-4), name
        assert torch.allclose(after[name].relu().mean(dim=(0, 2, 3))[live], torch.ones(int(live.sum())), atol=1e-4), name
    assert torch.allclose(after["pool1"], F.max_pool2d(after["relu1_2"], 2))
    assert not torch.allclose(means["relu2_1"], torch.ones_like(means["relu2_1"]), atol=0.1)  # the rescaling did something


def test_average_pooling_replaces_every_max_pooling():
    torch.manual_seed(0)
    max_pooled = VGGFeatures(layers=["relu1_2", "pool1", "relu5_1"], pooling="max", weights=None)
    averaged = VGGFeatures(layers=["relu1_2", "pool1", "relu5_1"], pooling="avg", weights=None)
    averaged.load_state_dict(max_pooled.state_dict())
    kinds = [type(layer) for layer in averaged.features]
    assert kinds.count(torch.nn.AvgPool2d) == 4 and torch.nn.MaxPool2d not in kinds  # pool1 ... pool4 before relu5_1
    images = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        found, reference = averaged(images), max_pooled(images)
    assert torch.allclose(found["pool1"], F.avg_pool2d(found["relu1_2"], 2))
    assert torch.allclose(reference["pool1"], F.max_pool2d(reference["relu1_2"], 2))
    assert not torch.allclose(found["relu5_1"], reference["relu5_1"])


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_gatys_losses_fall_over_the_steps(vgg, optimizer):
    content, style = smooth_images(2, seed=1), smooth_images(1, seed=2)
    settings = GatysSettings(optimizer=optimizer, steps=12)
    result = gatys_stylize(vgg, content, style, settings, progress=False)
    assert result.images.shape == content.shape and result.images.abs().max() <= 1
    for detail in result.details:
        start, end = detail["loss_start"]["total"], detail["loss_end"]["total"]
        assert end < 0.5 * start, (optimizer, start, end)
        assert len(detail["total_loss_per_step"]) == 12 and detail["total_loss_per_step"][0] == start
        assert detail["loss_end"]["style"] < detail["loss_start"]["style"]


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_batch_gives_what_each_image_gives_alone(vgg, optimizer):
    """One optimiser per image: batching shares the VGG passes, never the optimisation. In float64,
    where a batched convolution rounds like a single one (in float32 it does not quite, and L-BFGS
    amplifies that to ~1e-2 in a few steps), so any coupling of the images would show."""
    network = copy.deepcopy(vgg).double()
    content, styles = smooth_images(3, seed=3).double(), smooth_images(3, seed=4).double()
    settings = GatysSettings(optimizer=optimizer, steps=6)
    seeds = [11, 12, 13]
    together = gatys_stylize(network, content, styles[:1], settings, seeds, progress=False)
    for index in range(3):
        alone = gatys_stylize(network, content[index : index + 1], styles[:1], settings, seeds[index : index + 1], progress=False)
        assert torch.allclose(together.images[index], alone.images[0], rtol=0, atol=1e-9), (optimizer, index)
        assert together.details[index]["loss_end"]["total"] == pytest.approx(alone.details[0]["loss_end"]["total"], rel=1e-9)
    # one style image per content image (the compare command's pairing) is the same independence
    per_image = gatys_stylize(network, content[:2], styles[1:], settings, seeds[:2], progress=False)
    second = gatys_stylize(network, content[1:2], styles[2:], settings, seeds[1:2], progress=False)
    assert torch.allclose(per_image.images[1], second.images[0], rtol=0, atol=1e-9)
    assert not torch.allclose(per_image.images[0], together.images[0], atol=1e-3)  # another style, another result


def write_images(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"image{index}.png" for index in range(count)]
    for path, image in zip(paths, smooth_images(count, seed)):
        save_image((image + 1) / 2, path)
    return paths


def test_stylize_command_writes_a_grid_and_json_per_pair_and_a_summary(tmp_path):
    write_images(tmp_path / "content" / "nested", 2, seed=5)
    style = write_images(tmp_path / "style", 1, seed=6)[0]
    out = tmp_path / "out"
    result = run_train(
        "method=gatys", f"content={tmp_path / 'content'}", f"style={style}", "image_size=32", "steps=3",
        "optimizer=adam", "batch_size=2", "vgg.weights=null", "device=cpu", f"out_dir={out}", module="bicyclegan_pl.stylize",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "stylize.json").read_text())
    assert [Path(path).name for path in report["content"]] == ["image0.png", "image1.png"]
    assert len(report["pairs"]) == 2 and (out / "stylize.png").is_file()
    for pair in report["pairs"]:
        assert (out / pair["grid"]).is_file()
        record = json.loads((out / pair["json"]).read_text())
        assert record["loss_end"]["total"] < record["loss_start"]["total"]
        assert len(record["total_loss_per_step"]) == 3 and record["seconds"] > 0
        assert record["settings"]["optimizer"] == "adam" and record["settings"]["steps"] == 3
        assert record["style"] == str(style)


def test_stylize_normalises_the_network_on_a_folder_when_asked(tmp_path):
    """vgg.normalize.images rescales the loss network before the optimisation (the losses start elsewhere);
    a wrong folder names the key."""
    content = write_images(tmp_path / "content", 1, seed=8)[0]
    style = write_images(tmp_path / "style", 1, seed=9)[0]
    write_images(tmp_path / "normalise", 3, seed=10)
    common = [f"content={content}", f"style={style}", "image_size=32", "steps=2", "optimizer=adam", "vgg.weights=null", "device=cpu"]

    def start_loss(*overrides: str, name: str) -> float:
        report = stylize(compose_config(*common, *overrides, f"out_dir={tmp_path / name}", config_name="stylize", tiny=False))
        return json.loads((tmp_path / name / report["pairs"][0]["json"]).read_text())["loss_start"]["total"]

    plain = start_loss(name="plain")
    normalised = start_loss(f"vgg.normalize.images={tmp_path / 'normalise'}", "vgg.normalize.count=2", "vgg.normalize.size=32", name="normalised")
    assert normalised != pytest.approx(plain, rel=1e-3)
    with pytest.raises(UserError, match="vgg.normalize.images=.*nowhere: no such file or folder"):
        start_loss(f"vgg.normalize.images={tmp_path / 'nowhere'}", name="broken")


def test_stylize_user_errors_name_what_to_fix(tmp_path, monkeypatch):
    style = write_images(tmp_path / "style", 1, seed=7)[0]
    common = [f"style={style}", "image_size=32", "steps=1", "vgg.weights=null", "device=cpu", f"out_dir={tmp_path / 'out'}"]

    def run(*overrides: str) -> dict:
        return stylize(compose_config(*common, *overrides, config_name="stylize", tiny=False))

    with pytest.raises(UserError, match=f"content={tmp_path / 'nowhere'}: no such file or folder"):
        run(f"content={tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match="method=ghiasi_v2: unknown; choose from gatys"):
        run(f"content={style}", "method=ghiasi_v2")
    broken = tmp_path / "content" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"not a png")
    with pytest.raises(UserError, match=f"content image {broken} cannot be read"):
        run(f"content={broken.parent}")
    with pytest.raises(UserError, match="optimizer=sgd: choose from lbfgs, adam"):
        run(f"content={style}", "optimizer=sgd")
    # the default, the paper's normalised VGG-19, missing offline: its name, its URL and where to put it
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError, match="vgg_conv.pth was not found") as missing:
        run(f"content={style}", "vgg.weights=gatys", f"paths.weights_dir={tmp_path / 'weights'}")
    assert "https://bethgelab.org/media/uploads/pytorch_models/vgg_conv.pth" in str(missing.value)
    assert str(tmp_path / "weights" / "vgg_conv.pth") in str(missing.value)
    with pytest.raises(WeightsNotFoundError, match="vgg19-dcbb9e9d.pth was not found") as missing:
        run(f"content={style}", "vgg.weights=imagenet", f"paths.weights_dir={tmp_path / 'weights'}")
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in str(missing.value)
