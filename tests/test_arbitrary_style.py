"""Ghiasi et al.'s arbitrary style transfer (models.arbitrary_style, nets.style_transfer): conditional
instance norm, the style prediction heads, the paper's style interpolation, training through the
schedule engine with a frozen loss network, resume, the pretrained-weights lookup, and the commands."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from hydra.errors import InstantiationException

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.weights import WeightsNotFoundError
from bicyclegan_pl.models.arbitrary_style import ArbitraryStyleSettingError
from bicyclegan_pl.models.style_images import StyleAugmentation
from bicyclegan_pl.nets.style_transfer import (
    INCEPTION_URL,
    ConditionalInstanceNorm2d,
    InceptionEncoder,
    TransferNetwork,
    build_arbitrary_style_network,
)
from bicyclegan_pl.stylize import stylize
from tests.cli import run_train
from tests.helpers import build_model, compose_config, cpu_trainer, loader, random_batches, resumed_and_uninterrupted

#: narrow nets at 32 px on random VGG features, tiny predictor, plain style images
TINY_STYLE = (
    "+experiment=arbitrary_style_synthetic",
    "model.loss_network.weights=null",
    "model.tiny_channels=4",
    "model.transfer_channels=4",
    "model.residual_blocks=2",
    "model.style_bottleneck=8",
    "data.crop_size=32",
)
#: the CLI run of the tiny system: 2 iterations, offline
TINY_STYLE_CLI = (
    *TINY_STYLE,
    "data.train_size=4",
    "data.val_size=4",
    "data.batch_size=2",
    "trainer.max_epochs=1",
    "logger=csv",
    "metrics/feature_extractor=conv",
    "callbacks.sample_grid.num_inputs=2",
)


def tiny_model(*overrides: str):
    torch.manual_seed(0)
    model, _ = build_model(*TINY_STYLE, *overrides, tiny=False)
    return model


def rgb_batches(count: int, batch_size: int = 2, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    return random_batches(count, batch_size, size=32, input_nc=3, seed=seed)


def test_conditional_instance_norm_applies_the_predicted_gamma_and_beta():
    x = torch.randn(2, 3, 4, 5) * 3 + 1
    gamma, beta = torch.randn(2, 3), torch.randn(2, 3)
    out = ConditionalInstanceNorm2d(3)(x, gamma, beta)
    for n in range(2):
        for c in range(3):
            values = x[n, c]
            mean = values.sum() / values.numel()
            variance = ((values - mean) ** 2).sum() / values.numel()  # population variance, as tf.nn.moments
            expected = (values - mean) / torch.sqrt(variance + 1e-5) * gamma[n, c] + beta[n, c]
            assert torch.allclose(out[n, c], expected, atol=1e-5), (n, c)
    with pytest.raises(ValueError, match=r"gamma and beta must be \(2, 3\)"):
        ConditionalInstanceNorm2d(3)(x, gamma[:1], beta)


def test_style_prediction_gives_gamma_and_beta_for_every_conditional_layer():
    # Magenta's nza_model: 10 residual convolutions of 128 channels, then expand 64, 32, 3
    full = TransferNetwork(base_channels=32)
    assert list(full.norm_channels.values()) == [128] * 10 + [64, 32, 3]
    network = build_arbitrary_style_network("inception", base_channels=4, residual_blocks=2, bottleneck=100)
    style = torch.rand(2, 3, 75, 80) * 2 - 1
    embedding = network.embed(style)
    assert embedding.shape == (2, 100)
    parameters = network.predictor(style)
    assert list(parameters) == list(network.transfer.norm_channels) == [
        "residual1_conv1", "residual1_conv2", "residual2_conv1", "residual2_conv2", "expand_conv1", "expand_conv2", "expand_conv3",
    ]
    for name, (gamma, beta) in parameters.items():
        channels = network.transfer.norm_channels[name]
        assert gamma.shape == beta.shape == (2, channels), name
    content = torch.rand(2, 3, 36, 44) * 2 - 1
    output = network(content, style)
    assert output.shape == content.shape and output.abs().max() <= 1
    with pytest.raises(ValueError, match="at least 75 px"):
        network.embed(torch.zeros(1, 3, 64, 64))
    with pytest.raises(InstantiationException) as refused:  # Hydra wraps it; the entry points unwrap it
        tiny_model("model.style_predictor=inception", "model.style_image_size=64")
    assert isinstance(refused.value.__cause__, ArbitraryStyleSettingError)
    assert "model.style_image_size=64" in str(refused.value.__cause__)


def test_style_interpolation_mixes_the_content_and_style_embeddings():
    model = tiny_model().eval()
    content, style = (batch["A"] for batch in rgb_batches(2))
    network = model.network
    with torch.no_grad():
        own, styled = network.embed(content), network.embed(style)
        assert torch.equal(model.stylize(content, style, 1.0), network.stylize(content, styled))
        assert torch.equal(model.stylize(content, style, 0.0), network.stylize(content, own))
        assert torch.allclose(model.stylize(content, style, 0.25), network.stylize(content, 0.75 * own + 0.25 * styled), atol=1e-6)
        # one style image for a batch of content images
        single = model.stylize(content, style[:1])
        assert torch.allclose(single[1], network.stylize(content[1:], network.embed(style[:1]))[0], atol=1e-6)
    assert not torch.allclose(model.stylize(content, style, 0.0), model.stylize(content, style, 1.0))


def weighted_loss(model, batch: dict[str, torch.Tensor]) -> float:
    """The training objective on a batch, without augmentation, in training mode (batch statistics)."""
    model.train()
    with torch.no_grad():
        stylized = model.network(batch["A"], batch["B"])
        features = model.loss_network(stylized)
        content = model.content_loss(features, model.loss_network(batch["A"]))
        style = model.style_loss(features, model.style_grams(model.loss_network(batch["B"])))
    return float(model.loss_weights["content"] * content + model.loss_weights["style"] * style)


def test_training_lowers_the_loss_and_changes_only_the_trained_networks():
    model = tiny_model("model.style_augmentation=null", "model.loss_weights.tv=0")
    batches = rgb_batches(1) * 8  # one batch, eight times
    vgg = model.loss_network
    vgg_before = {key: value.clone() for key, value in vgg.state_dict().items()}
    network_before = copy.deepcopy(model.network.state_dict())
    before = weighted_loss(model, batches[0])
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        tiny_model().loss_network  # noqa: B018
    trainer = cpu_trainer()
    trainer.fit(model, train_dataloaders=loader(batches))
    assert model.iteration == 8
    after = weighted_loss(model, batches[0])
    assert after < 0.9 * before, (before, after)
    assert model.loss_network is vgg and all(torch.equal(vgg_before[k], v) for k, v in vgg.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in vgg.parameters())
    changed = [k for k, v in model.network.state_dict().items() if not torch.equal(v, network_before[k])]
    assert any(k.startswith("transfer.") for k in changed) and any(k.startswith("predictor.") for k in changed)
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.network.parameters()}
    assert {key.split(".")[0] for key in model.state_dict()} == {"network"}  # the loss network is never saved


def test_resume_equals_an_uninterrupted_run_augmentation_included(tmp_path):
    """Style augmentation draws per iteration: 2 epochs in one go, or 1 + resume + 1, end alike."""
    initial = tiny_model()
    assert initial.style_augmentation is not None
    batches = rgb_batches(3, seed=4)

    def fit(model, epochs, ckpt_path=None):
        trainer = cpu_trainer(max_epochs=epochs)
        trainer.fit(model, train_dataloaders=loader(batches), ckpt_path=ckpt_path)
        return trainer

    (uninterrupted, full), (resumed, again) = resumed_and_uninterrupted(initial, fit, tmp_path / "half.ckpt")
    assert resumed.iteration == uninterrupted.iteration == 6
    assert not torch.equal(initial.network.transfer.expand[0][1].weight, resumed.network.transfer.expand[0][1].weight)
    ours, theirs = full.optimizers[0].state_dict()["state"], again.optimizers[0].state_dict()["state"]
    for a, b in zip(ours.values(), theirs.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and int(a["step"]) == int(b["step"]) == 6


def test_style_augmentation_is_magentas_per_image_colour_flip_and_batch_resize():
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    augmentation = StyleAugmentation(random_size=(40, 48))
    draws = augmentation.draw(3, torch.Generator().manual_seed(1))
    assert torch.equal(draws["hue"], augmentation.draw(3, torch.Generator().manual_seed(1))["hue"])
    out = augmentation.apply(images, draws)
    assert out.shape[:2] == (3, 3) and 40 <= out.shape[-1] < 48 and out.shape[-1] == out.shape[-2] == int(draws["size"])
    assert out.min() >= -1 and out.max() <= 1 and draws["brightness"].abs().max() <= 0.8
    # with every colour change off only the flips remain
    flips = StyleAugmentation(brightness=0.0, saturation=(1.0, 1.0), hue=0.0, random_size=None)
    draws = flips.draw(3, torch.Generator().manual_seed(2))
    out = flips.apply(images, draws)
    for index in range(3):
        expected = images[index]
        if draws["flip_lr"][index]:
            expected = expected.flip(-1)
        if draws["flip_ud"][index]:
            expected = expected.flip(-2)
        assert torch.allclose(out[index], expected, atol=1e-5)
    with pytest.raises(ValueError, match="random_size"):
        StyleAugmentation(random_size=(48, 40))


def test_pretrained_weights_load_lazily_and_missing_ones_name_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    weights_dir = tmp_path / "weights"
    model = tiny_model(
        "model.style_predictor=inception", "model.style_image_size=75", "model.style_augmentation.random_size=null",
        "model.inception.weights=imagenet", "model.inception.allow_download=false",
        "model.loss_network.weights=caffe", "model.loss_network.allow_download=false",
        f"paths.weights_dir={weights_dir}",
    )
    # inference (a loaded checkpoint) needs neither file
    content, style = rgb_batches(1)[0].values()
    assert model.eval().stylize(content, style).shape == content.shape
    with pytest.raises(WeightsNotFoundError, match="inception_v3_google-0cc3c7bd.pth was not found") as missing:
        model.setup("fit")
    assert INCEPTION_URL in str(missing.value) and str(weights_dir / "inception_v3_google-0cc3c7bd.pth") in str(missing.value)
    # Magenta's loss network: Caffe's VGG-16 (slim's vgg_16 is its conversion), fed Caffe's input
    with pytest.raises(WeightsNotFoundError, match="vgg16-00b39a1b.pth was not found") as missing:
        model.loss_network  # noqa: B018
    assert "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth" in str(missing.value)
    # the official file's layout (more layers than kept) loads into the truncated trunk
    official = InceptionEncoder()
    weights_dir.mkdir()
    torch.save({**official.state_dict(), "fc.weight": torch.zeros(2, 2)}, weights_dir / "inception_v3_google-0cc3c7bd.pth")
    with pytest.raises(WeightsNotFoundError, match="vgg16-00b39a1b.pth"):  # Inception first, then the loss network
        model.setup("fit")
    loaded = model.network.predictor.encoder.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in official.state_dict().items())


def test_train_names_a_missing_loss_network_file_before_any_logger_starts(tmp_path, monkeypatch):
    """train checks the files setup would load before it opens its loggers: no csv (or W&B) run is
    left behind by a training that cannot start; a resumed fit needs the loss network, not Inception."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    weights_dir = tmp_path / "weights"
    run_dir = tmp_path / "run"
    result = run_train(
        *TINY_STYLE_CLI, "model.loss_network.weights=caffe", "model.loss_network.allow_download=false",
        f"paths.weights_dir={weights_dir}", f"hydra.run.dir={run_dir}",
    )
    assert result.returncode != 0
    assert "vgg16-00b39a1b.pth was not found" in result.stderr + result.stdout
    assert not (run_dir / "csv").exists()
    model = tiny_model(
        "model.style_predictor=inception", "model.style_image_size=75", "model.style_augmentation.random_size=null",
        "model.inception.weights=imagenet", "model.inception.allow_download=false",
        "model.loss_network.weights=caffe", "model.loss_network.allow_download=false", f"paths.weights_dir={weights_dir}",
    )
    weights_dir.mkdir()
    (weights_dir / "vgg16-00b39a1b.pth").write_bytes(b"")  # found is enough: setup loads it
    model.check_pretrained_files(resuming=True)
    with pytest.raises(WeightsNotFoundError, match="inception_v3_google-0cc3c7bd.pth was not found"):
        model.check_pretrained_files(resuming=False)


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A tiny system trained for 2 iterations by the train command, offline; its run folder."""
    run_dir = tmp_path_factory.mktemp("arbitrary_style") / "run"
    result = run_train(*TINY_STYLE_CLI, f"hydra.run.dir={run_dir}")
    return run_dir, result


def test_train_command_runs_offline_and_saves_only_the_trained_networks(trained_checkpoint):
    run_dir, result = trained_checkpoint
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RANDOMLY INITIALISED" in result.stderr  # random VGG features are never silent
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["iteration"] == 2
    assert {key.split(".")[1] for key in checkpoint["state_dict"]} == {"transfer", "predictor"}
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/content_epoch", "train/style_epoch", "train/tv_epoch", "val/loss", "val/style"} <= set(header)
    assert (run_dir / "samples" / "epoch_000.png").is_file()
    assert list((run_dir / "checkpoints").glob("best-epoch000.ckpt"))  # chosen by val/loss


def test_stylize_command_runs_a_trained_checkpoint(trained_checkpoint, tmp_path):
    run_dir, _ = trained_checkpoint
    from torchvision.utils import save_image

    for folder, count in (("content", 3), ("style", 1)):
        (tmp_path / folder).mkdir()
        for index in range(count):
            save_image(torch.rand(3, 40, 40), tmp_path / folder / f"{folder}{index}.png")
    out = tmp_path / "out"
    result = run_train(
        "method=ghiasi", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", f"content={tmp_path / 'content'}",
        f"style={tmp_path / 'style'}", "image_size=32", "batch_size=2", "interpolation=0.5", "device=cpu",
        f"out_dir={out}", module="bicyclegan_pl.stylize",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "stylize.json").read_text())
    assert len(report["pairs"]) == 3 and (out / "stylize.png").is_file()
    record = json.loads((out / report["pairs"][0]["json"]).read_text())
    assert record["method"] == "ghiasi" and record["interpolation"] == 0.5 and record["seconds"] > 0
    assert (out / record["grid"]).is_file()
    # a checkpoint of another system is refused by name
    other = tmp_path / "cyclegan.ckpt"
    torch.save({"state_dict": {}, "run_config": {"model": {"_target_": "bicyclegan_pl.models.cyclegan.CycleGAN"}}}, other)
    cfg = compose_config(
        "method=ghiasi", f"ckpt={other}", f"content={tmp_path / 'content'}", f"style={tmp_path / 'style'}",
        "image_size=32", "device=cpu", f"out_dir={out}", config_name="stylize", tiny=False,
    )
    with pytest.raises(UserError, match="is a checkpoint of CycleGAN, but stylize method=ghiasi needs a ArbitraryStyleTransfer"):
        stylize(cfg)
