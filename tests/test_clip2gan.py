"""CLIP2GAN (seed 003): the mapping network, each loss term against a hand computation, what is
frozen and what trains, resume, and the generate / edit commands end to end, offline (a tiny
CLIP built locally, a tiny DCGAN trained by the real command)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from bicyclegan_pl.data.datamodules import SyntheticObjectsDataModule
from bicyclegan_pl.losses.clip2gan import (
    diversity_loss,
    fake_gradient_penalty,
    identity_loss,
    reconstruction_loss,
    saturating_generator_loss,
)
from bicyclegan_pl.nets.mapping import MappingNetwork
from tests.cli import run_train
from tests.helpers import StepRecorder, build_model, clone, compose_config, cpu_trainer

TINY_OBJECTS = ["data.train_size=16", "data.val_size=8", "data.batch_size=4", "trainer.max_epochs=1", "logger=csv",
                "callbacks.metrics=null", "callbacks.sample_grid.num_inputs=4", "callbacks.sample_grid.num_samples=2"]


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DCGAN of one tiny epoch, exported where clip2gan_synthetic would find it (by path here)."""
    folder = tmp_path_factory.mktemp("tiny_dcgan")
    exported = folder / "generators" / "dcgan.ckpt"
    result = run_train(
        "+experiment=dcgan_synthetic", "model.generator.ngf=8", "model.discriminator.ndf=8", "model.generator.z_dim=16",
        *TINY_OBJECTS, f"callbacks.export.path={exported}", f"hydra.run.dir={folder / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (folder / "run" / "samples" / "latest.png").is_file()
    return exported


def _tiny_clip2gan(clip: Path, generator: Path) -> tuple[str, ...]:
    return (
        "+experiment=clip2gan_synthetic", f"model.clip.name={clip}", f"model.generator.path={generator}",
        "model.mapping.depth=4", "model.mapping.hidden_dim=32", "model.discriminator.ndf=8",
    )


def _batches(count: int, seed: int = 0) -> DataLoader:
    data = SyntheticObjectsDataModule(crop_size=32, train_size=4 * count, val_size=4, batch_size=4, seed=seed)
    data.setup("fit")
    return DataLoader([{"B": data.train_set[i]["B"]} for i in range(4 * count)], batch_size=4, shuffle=False)


# ---- the pieces --------------------------------------------------------------------------------
def test_mapping_network_outputs_w_plus_and_z_shapes():
    w_plus = MappingNetwork(16, (10, 32), depth=12, hidden_dim=24)
    assert w_plus(torch.randn(3, 16)).shape == (3, 10, 32)
    assert sum(isinstance(m, torch.nn.Linear) for m in w_plus.modules()) == 12
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in w_plus.modules()) == 12  # Eq. 3: after every layer
    linear_end = MappingNetwork(16, (100,), depth=4, final_activation=False)
    assert linear_end(torch.randn(2, 16)).shape == (2, 100)
    assert not isinstance(list(linear_end.layers)[-1], torch.nn.LeakyReLU)


def test_mapping_starts_as_a_map_that_depends_on_its_input():
    """He initialisation keeps the signal through 12 LeakyReLU layers (PyTorch's default init
    shrank it about sqrt(3)-fold per layer, and M trained from there collapsed to one image)."""
    torch.manual_seed(0)
    mapping = MappingNetwork(64, (100,), depth=12, hidden_dim=256)
    outputs = mapping(torch.randn(256, 64))
    assert outputs.std(0).mean() > 0.3  # varies with the input
    default = MappingNetwork(64, (100,), depth=12, hidden_dim=256)
    for layer in default.layers:
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()  # PyTorch's own init
    assert default(torch.randn(256, 64)).std(0).mean() < 0.01


def test_sphere_projection_puts_codes_where_dcgan_was_trained(tiny_clip_dir, tiny_generator):
    model, _ = build_model(*_tiny_clip2gan(tiny_clip_dir, tiny_generator), "model.latent_projection=sphere", tiny=False)
    latent = model.to_latent(torch.randn(5, 16) * 3)
    assert torch.allclose(latent.norm(dim=1), torch.full((5,), 16 ** 0.5), atol=1e-4)  # DCGAN z_dim 16 here
    images = next(iter(_batches(1)))["B"]
    edited = model.edit(images, "a blue object", [0.0], space="gan")[0]
    with torch.no_grad():
        assert torch.allclose(edited, model.decode(model.image_features(images)), atol=1e-6)


def test_modality_gap_moves_text_features_by_the_mean_image_text_offset(tiny_clip_dir, tiny_generator):
    model, _ = build_model(*_tiny_clip2gan(tiny_clip_dir, tiny_generator), tiny=False)
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    captions = ["a red star", "a blue ellipse", "a star", "a green object", "a gray polygon", "a triangle"]
    gap = model.modality_gap(images, captions)
    expected = model.clip.encode_images(images).mean(0) - model.clip.encode_text(captions).mean(0)
    assert torch.allclose(gap, expected, atol=1e-6)
    text = model.clip.encode_text(["a red star"])
    shifted = model.text_features(["a red star"], shift=gap)
    assert torch.allclose(shifted, F.normalize(text + gap, dim=1) * 16 ** 0.5, atol=1e-5)  # sqrt_dim: D = 16
    assert torch.allclose(model.text_features(["a red star"]), text * 16 ** 0.5, atol=1e-5)


def test_renormalized_noise_keeps_the_features_norm(tiny_clip_dir, tiny_generator):
    model, _ = build_model(*_tiny_clip2gan(tiny_clip_dir, tiny_generator), "model.noise.renormalize=true", tiny=False)
    features = model.image_features(next(iter(_batches(1)))["B"])
    noisy = model.add_noise(features, model.draw_noise(features.shape, torch.Generator().manual_seed(0)))
    assert torch.allclose(noisy.norm(dim=1), features.norm(dim=1), atol=1e-4)
    assert torch.allclose(features.norm(dim=1), torch.full((4,), 16 ** 0.5), atol=1e-4)  # sqrt_dim: the tiny CLIP's 16
    assert not torch.allclose(noisy, features)


def test_loss_terms_match_hand_computations():
    generator = torch.Generator().manual_seed(0)
    real, fake = torch.rand(2, 3, 4, 4, generator=generator), torch.rand(2, 3, 4, 4, generator=generator)
    assert torch.isclose(reconstruction_loss(real, fake), ((real - fake) ** 2).sum() / real.numel())
    logits = torch.tensor([[0.3], [-2.0]])
    by_hand = (math.log(1 - 1 / (1 + math.exp(-0.3))) + math.log(1 - 1 / (1 + math.exp(2.0)))) / 2
    assert math.isclose(float(saturating_generator_loss(logits)), by_hand, rel_tol=1e-6)
    # identity: 1 - cosine; orthogonal -> 1, parallel -> 0, averaged over the batch
    a, b = torch.tensor([[1.0, 0.0], [2.0, 2.0]]), torch.tensor([[0.0, 3.0], [1.0, 1.0]])
    assert math.isclose(float(identity_loss(a, b)), 0.5, abs_tol=1e-6)
    # diversity: mean|f - f1| / mean|x - x1|
    f, f1 = torch.zeros(2, 4), torch.full((2, 4), 0.5)
    x, x1 = torch.zeros(2, 3, 2, 2), torch.full((2, 3, 2, 2), 0.25)
    assert math.isclose(float(diversity_loss(f, f1, x, x1, eps=0.0)), 2.0, rel_tol=1e-6)
    # Eq. 7's penalty at the fakes: a linear D has gradient w everywhere -> (||w|| - 1)^2
    discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 1))
    weight_norm = float(discriminator[1].weight.detach().norm())
    penalty = fake_gradient_penalty(discriminator, fake)
    assert math.isclose(float(penalty), (weight_norm - 1.0) ** 2, rel_tol=1e-5)
    penalty.backward()
    assert discriminator[1].weight.grad is not None and discriminator[1].weight.grad.abs().sum() > 0


# ---- the system --------------------------------------------------------------------------------
def test_one_step_trains_m_and_d_and_leaves_clip_and_g_bit_identical(tiny_clip_dir, tiny_generator):
    torch.manual_seed(0)
    model, _ = build_model(*_tiny_clip2gan(tiny_clip_dir, tiny_generator), tiny=False)
    clip_before = {k: v.clone() for k, v in model.clip.model.state_dict().items()}
    generator_before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    mapping_before = clone(model.mapping).state_dict()
    recorder = StepRecorder()
    cpu_trainer(limit_train_batches=1, callbacks=[recorder]).fit(model, train_dataloaders=_batches(1))
    assert recorder.order == ["M", "D"]
    assert any(g.abs().sum() > 0 for g in recorder.gradients("M")[0])
    assert any(not torch.equal(mapping_before[k], v) for k, v in model.mapping.state_dict().items())
    assert all(torch.equal(clip_before[k], v) for k, v in model.clip.model.state_dict().items())
    assert all(torch.equal(generator_before[k], v) for k, v in model.generator.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in (*model.generator.parameters(), *model.clip.model.parameters()))
    assert not model.generator.training  # frozen BatchNorm statistics even inside fit
    keys = model.state_dict().keys()
    assert any(k.startswith("generator.") for k in keys) and not any(k.startswith("clip") for k in keys)


def test_edit_at_beta_zero_is_the_reconstruction_and_text_moves_it(tiny_clip_dir, tiny_generator):
    model, _ = build_model(*_tiny_clip2gan(tiny_clip_dir, tiny_generator), tiny=False)
    images = next(iter(_batches(1)))["B"]
    with torch.no_grad():
        rebuilt = model.decode(model.image_features(images))
    for space in ("gan", "clip"):
        edited = model.edit(images, "a blue object", [0.0, 1.0], space=space)
        assert edited.shape == (2, 4, 3, 32, 32)
        assert torch.allclose(edited[0], rebuilt, atol=1e-6)
        assert not torch.allclose(edited[1], rebuilt)
    samples = model.generate_from_text(["a red star", "a blue ellipse"], 3, torch.Generator().manual_seed(0))
    assert samples.shape == (3, 2, 3, 32, 32) and not torch.equal(samples[0], samples[1])
    fixed = model.generate_from_text(["a red star"], 2, torch.Generator().manual_seed(0), noise=False)
    assert torch.equal(fixed[0], fixed[1])


def test_resume_equals_an_uninterrupted_run(tiny_clip_dir, tiny_generator, tmp_path):
    torch.manual_seed(0)
    initial, _ = build_model(*_tiny_clip2gan(tiny_clip_dir, tiny_generator), tiny=False)
    data = SyntheticObjectsDataModule(crop_size=32, train_size=8, val_size=4, batch_size=4, seed=3)

    def fit(model, epochs, ckpt_path=None):
        trainer = cpu_trainer(max_epochs=epochs)
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
        return trainer

    uninterrupted = clone(initial)
    fit(uninterrupted, 2)
    half = clone(initial)
    fit(half, 1).save_checkpoint(tmp_path / "half.ckpt")
    resumed = clone(initial)
    fit(resumed, 2, tmp_path / "half.ckpt")
    assert resumed.iteration == uninterrupted.iteration == 4
    for (key, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{key} differs after resume"


def test_settings_that_cannot_work_are_refused_with_the_key(tiny_clip_dir, tiny_generator, tmp_path):
    with pytest.raises(Exception, match="model.identity"):
        build_model(*_tiny_clip2gan(tiny_clip_dir, tiny_generator), "model.loss_weights.id=1", tiny=False)
    with pytest.raises(Exception, match="dcgan_synthetic"):
        build_model(*_tiny_clip2gan(tiny_clip_dir, tmp_path / "missing.ckpt"), tiny=False)


def test_identity_network_loads_from_torch_export_and_torchscript(tmp_path):
    from bicyclegan_pl.models.frozen_networks import IdentityNetworkError, load_identity_network

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    images = torch.rand(2, 3, 112, 112)
    exported = tmp_path / "arcface.pt2"
    torch.export.save(torch.export.export(net, (images,)), str(exported))
    loaded = load_identity_network(exported).requires_grad_(False).eval()  # what CLIP2GAN does with it
    assert torch.allclose(loaded(images), net(images), atol=1e-6)
    with pytest.raises(IdentityNetworkError, match="does not exist"):
        load_identity_network(tmp_path / "missing.pt2")
    (tmp_path / "junk.pt").write_text("not a network")
    with pytest.raises(IdentityNetworkError, match="not a TorchScript module"):
        load_identity_network(tmp_path / "junk.pt")


def test_identity_term_uses_a_torchscript_network(tiny_clip_dir, tiny_generator, tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    path = tmp_path / "arcface.pt"
    torch.jit.save(torch.jit.trace(net.eval(), torch.zeros(1, 3, 112, 112)), str(path))
    model, _ = build_model(
        *_tiny_clip2gan(tiny_clip_dir, tiny_generator), "model.loss_weights.id=1",
        f"+model.identity={{_target_: bicyclegan_pl.models.frozen_networks.load_identity_network, _partial_: true, path: {path}}}",
        tiny=False,
    )
    recorder = StepRecorder()
    cpu_trainer(limit_train_batches=1, callbacks=[recorder]).fit(model, train_dataloaders=_batches(1))
    assert recorder.order == ["M", "D"]
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    embed = lambda images: net(F.interpolate(images, size=(112, 112), mode="bilinear", align_corners=False))  # noqa: E731
    assert torch.allclose(identity_loss(embed(real), embed(real.flip(0))), identity_loss(model.identity(F.interpolate(real, size=(112, 112), mode="bilinear", align_corners=False)), embed(real.flip(0))), atol=1e-6)


# ---- the commands ------------------------------------------------------------------------------
def test_train_generate_and_edit_commands_end_to_end(tiny_clip_dir, tiny_generator, tmp_path):
    run_dir = tmp_path / "clip2gan"
    result = run_train(*_tiny_clip2gan(tiny_clip_dir, tiny_generator), *TINY_OBJECTS, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert (run_dir / "samples" / "latest.png").is_file()

    out = tmp_path / "generated"
    result = run_train(f"ckpt={ckpt}", "prompt=[a red star,a blue ellipse]", "num_samples=3", f"out_dir={out}", module="bicyclegan_pl.generate")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "generate.json").read_text())
    assert report["prompts"] == ["a red star", "a blue ellipse"] and report["num_samples"] == 3
    truth = report["ground_truth"]["attributes"]  # synthetic objects: judged from the ground truth
    assert set(truth) == {"colour", "family"} and truth["colour"]["images"] == 6 and truth["colour"]["chance"] == 1 / 8
    assert torch.load(out / "images.pt").shape == (3, 2, 3, 32, 32)
    assert (out / "generate.png").stat().st_size > 0

    images = tmp_path / "inputs"
    images.mkdir()
    from torchvision.utils import save_image

    for index in range(2):
        save_image(torch.rand(3, 40, 40), images / f"image{index}.png")
    edited = tmp_path / "edited"
    result = run_train(f"ckpt={ckpt}", f"image={images}", "prompt=blue", "beta=[0,0.5,1]", "space=clip", f"out_dir={edited}", module="bicyclegan_pl.edit")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((edited / "edit.json").read_text())
    assert report["beta"] == [0.0, 0.5, 1.0] and report["space"] == "clip" and len(report["images"]) == 2

    # user mistakes end in a message naming the argument (in-process: the same functions main calls)
    from bicyclegan_pl.edit import edit
    from bicyclegan_pl.generate import generate
    from bicyclegan_pl.errors import UserError

    judged = edit(compose_config(f"ckpt={ckpt}", "val_inputs=4", "prompt=a blue object", "beta=[0,1]", f"out_dir={edited}", config_name="edit", tiny=False))
    per_beta = judged["ground_truth"]["per_beta"]
    assert [row["beta"] for row in per_beta] == [0.0, 1.0] and {"success_colour", "kept_family", "mask_iou"} <= set(per_beta[0])
    assert truth_in_range(per_beta)
    with pytest.raises(UserError, match="no such file or folder"):
        edit(compose_config(f"ckpt={ckpt}", f"image={tmp_path / 'nowhere.png'}", "prompt=blue", f"out_dir={edited}", config_name="edit", tiny=False))
    with pytest.raises(UserError, match="needs a CLIP2GAN checkpoint"):
        generate(compose_config(f"ckpt={tiny_generator}", "prompt=red", f"out_dir={out}", config_name="generate", tiny=False))
    shifted = generate(compose_config(f"ckpt={ckpt}", "prompt=[a red object]", "num_samples=1", "noise=false", "text_shift=modality_gap",
                                      "gap_items=8", f"out_dir={tmp_path / 'shifted'}", config_name="generate", tiny=False))
    assert shifted["text_shift"] == "modality_gap" and shifted["ground_truth"]["attributes"]["colour"]["images"] == 1
    with pytest.raises(UserError, match="text_shift"):
        generate(compose_config(f"ckpt={ckpt}", "prompt=red", "text_shift=sideways", f"out_dir={out}", config_name="generate", tiny=False))

    # generation from held-out captions, judged like the paper's FID: the model's images against an
    # oracle that returns the held-out images themselves (FID 0, every caption's colour shown)
    def from_captions(folder):
        arguments = ("captions=24", "kid_subsets=5", "metrics/feature_extractor@feature_extractor=conv", f"out_dir={tmp_path / folder}")
        return generate(compose_config(f"ckpt={ckpt}", *arguments, config_name="generate", tiny=False))["captions"]

    scored = from_captions("captions")
    assert scored["num_captions"] == 24 and scored["caption_fid_conv"] > 0.01 and 0.0 <= scored["caption_colour"] <= 1.0
    assert json.loads((tmp_path / "captions" / "metrics.json").read_text())["metrics"]["caption_fid_conv"] == scored["caption_fid_conv"]
    assert (tmp_path / "captions" / "captions.png").stat().st_size > 0
    data = dict(torch.load(ckpt, weights_only=False)["run_config"]["data"], val_size=24)
    held_out = instantiate(data, _convert_="all")
    held_out.setup("fit")
    real = torch.stack([held_out.val_set[index]["B"] for index in range(24)])
    calls = []

    def oracle(self, prompts, num_samples, generator, noise=True, shift=None):
        start = sum(calls)
        calls.append(len(prompts))
        return real[start : start + len(prompts)].unsqueeze(0)

    from bicyclegan_pl.models.clip2gan import CLIP2GAN

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CLIP2GAN, "generate_from_text", oracle)
        perfect = from_captions("oracle")
    assert calls == [24] and abs(perfect["caption_fid_conv"]) < 1e-3 and perfect["caption_colour"] == 1.0
    assert perfect["caption_out_of_range"] == 0.0 and 0.0 <= scored["caption_out_of_range"] <= 1.0
    real[::2] *= 4  # half the images far out of range
    calls.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CLIP2GAN, "generate_from_text", oracle)
        assert from_captions("oracle_out_of_range")["caption_out_of_range"] == 0.5
    assert perfect["caption_fid_conv"] < scored["caption_fid_conv"]
    from bicyclegan_pl.config import user_errors_as_messages

    with pytest.raises(SystemExit) as stopped, user_errors_as_messages():
        generate(compose_config(f"ckpt={ckpt}", f"out_dir={out}", config_name="generate", tiny=False))  # no prompt
    assert stopped.value.code == 2
    with pytest.raises(UserError, match="one text"):
        edit(compose_config(f"ckpt={ckpt}", f"image={images}", "prompt=[blue,red]", f"out_dir={edited}", config_name="edit", tiny=False))
    with pytest.raises(UserError, match="give numbers"):
        edit(compose_config(f"ckpt={ckpt}", f"image={images}", "prompt=blue", "beta=[a,b]", f"out_dir={edited}", config_name="edit", tiny=False))


TINY_STYLEGAN2 = ("model.generator.size=32", "model.generator.style_dim=16", "model.generator.n_mlp=2", "model.generator.max_channels=8")


def _tiny_rosinality_checkpoint(folder: Path):
    """A random 32 px StyleGAN2 (w 16, widths 8) saved as rosinality's code saves one: (it, path)."""
    from bicyclegan_pl.nets.stylegan2 import StyleGAN2Generator

    torch.manual_seed(0)
    source = StyleGAN2Generator(32, style_dim=16, n_mlp=2, max_channels=8)
    path = folder / "stylegan2-tiny.pt"
    torch.save({"g_ema": source.state_dict(), "latent_avg": torch.zeros(16)}, path)
    return source, path


def test_a_rosinality_stylegan2_checkpoint_is_the_frozen_generator_and_m_maps_into_w_plus(tiny_clip_dir, tmp_path):
    """The format researchers have: {"g_ema", "latent_avg"} saved by rosinality's code; M then outputs
    W+ (num_ws x w_dim) and one step trains M only."""
    source, path = _tiny_rosinality_checkpoint(tmp_path)
    model, _ = build_model(*_tiny_clip2gan(tiny_clip_dir, path), *TINY_STYLEGAN2, "model.latent_projection=none", tiny=False)
    ws = torch.randn(2, 8, 16)
    assert torch.equal(model.generator.synthesize(ws), source.synthesize(ws))
    assert model.mapping(torch.randn(3, 16)).shape == (3, 8, 16)
    recorder = StepRecorder()
    cpu_trainer(limit_train_batches=1, callbacks=[recorder]).fit(model, train_dataloaders=_batches(1))
    assert recorder.order == ["M", "D"]
    assert all(torch.equal(a, b) for a, b in zip(model.generator.state_dict().values(), source.state_dict().values()))
    with pytest.raises(Exception, match="model.generator.size"):
        build_model(*_tiny_clip2gan(tiny_clip_dir, path), tiny=False)
    with pytest.raises(Exception, match="latent_projection=none"):
        build_model(*_tiny_clip2gan(tiny_clip_dir, path), *TINY_STYLEGAN2, "model.latent_projection=sphere", tiny=False)
    with pytest.raises(Exception, match="data.crop_size=32"):
        build_model(*_tiny_clip2gan(tiny_clip_dir, path), *TINY_STYLEGAN2, "model.latent_projection=none", "data.crop_size=64", tiny=False)


def truth_in_range(rows: list[dict]) -> bool:
    return all(0.0 <= value <= 1.0 for row in rows for key, value in row.items() if key != "beta")


def test_ellipsoid_projection_keeps_w_plus_codes_inside_the_generators_own_prior(tiny_clip_dir, tmp_path):
    """latent_projection=ellipsoid: centre, covariance and radius come from G's own prior codes
    (mapping(z)); a code at whitened distance k R from the centre lands at R tanh(k) in the same
    whitened direction, so even a code 1e6 radii out stays on the rim; M still gets a gradient."""
    from bicyclegan_pl.models.clip2gan import PRIOR_QUANTILE, PRIOR_SAMPLES

    source, path = _tiny_rosinality_checkpoint(tmp_path)
    model, _ = build_model(*_tiny_clip2gan(tiny_clip_dir, path), *TINY_STYLEGAN2, "model.latent_projection=ellipsoid", tiny=False)
    with torch.no_grad():
        w = source.style(torch.randn(PRIOR_SAMPLES, 16, generator=torch.Generator().manual_seed(0))).double()
    centre = w.mean(0)
    covariance = torch.cov(w.T)
    factor = torch.linalg.cholesky(covariance)
    whitened = torch.linalg.solve(factor, (w - centre).T).T
    radius = torch.quantile(whitened.norm(dim=1), PRIOR_QUANTILE)
    assert model.latent_centre.shape == (8, 16) and model.latent_shape_factor.shape == (8, 16, 16)
    torch.testing.assert_close(model.latent_centre, centre.float().expand(8, 16))
    torch.testing.assert_close(model.latent_shape_factor @ model.latent_shape_factor.transpose(1, 2),
                               covariance.float().expand(8, 16, 16), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.latent_radius, radius.float().expand(8), rtol=1e-4, atol=1e-5)

    direction = F.normalize(torch.randn(16, dtype=torch.float64), dim=0)  # a whitened direction
    codes = [centre + radius * k * (factor @ direction) for k in (0.3, 3.0, 1e6)]
    projected = model.project(torch.stack([code.float().expand(8, 16) for code in codes]))
    for code, k in zip(projected, (0.3, 3.0, 1e6)):  # m + L u R tanh(|u| / R) / |u|, by hand
        expected = centre + radius * math.tanh(k) * (factor @ direction)
        torch.testing.assert_close(code.double(), expected.expand(8, 16), rtol=1e-3, atol=1e-3)
    rim = torch.linalg.solve(factor.float(), (projected[2] - model.latent_centre).T).T.norm(dim=1)
    assert torch.all(rim <= radius.float() * (1 + 1e-4))

    model.mapping.zero_grad()
    model.decode(torch.randn(2, 16)).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.mapping.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.mapping.parameters())
    assert {"latent_centre", "latent_shape_factor", "latent_radius"} <= set(model.state_dict())


def test_z_plus_sends_each_layers_code_through_the_generators_mapping_network(tiny_clip_dir, tiny_generator, tmp_path):
    source, path = _tiny_rosinality_checkpoint(tmp_path)
    model, _ = build_model(*_tiny_clip2gan(tiny_clip_dir, path), *TINY_STYLEGAN2, "model.latent_projection=z_plus", tiny=False)
    z_plus = torch.randn(3, 8, 16) * torch.linspace(0.1, 100, 8).view(1, 8, 1)  # any scale: PixelNorm comes first
    expected = torch.stack([torch.stack([source.style(z_plus[b, layer : layer + 1])[0] for layer in range(8)]) for b in range(3)])
    with torch.no_grad():
        torch.testing.assert_close(model.project(z_plus), expected, rtol=1e-5, atol=1e-5)
    model.mapping.zero_grad()
    model.decode(torch.randn(2, 16)).square().mean().backward()
    assert any(p.grad.abs().sum() > 0 for p in model.mapping.parameters())
    assert all(p.grad is None for p in model.generator.parameters())
    with pytest.raises(Exception, match="sphere"):
        build_model(*_tiny_clip2gan(tiny_clip_dir, tiny_generator), "model.latent_projection=z_plus", tiny=False)
