"""CLIP guidance (seed 000): the loader on a locally built tiny CLIP, differentiable CLIP
preprocessing, ranking and latent optimisation with a stand-in scorer, and the guide CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bicyclegan_pl.clip import ClipNotFoundError, ClipPreprocess, ClipScorer, PromptError, load_clip
from bicyclegan_pl.guidance import optimize, rank, rank_then_optimize
from bicyclegan_pl.nets.generators import UnetGenerator
from tests.cli import run_train
from tests.clip_fixtures import TINY_CLIP_RESOLUTION

NZ = 8


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_dir):
    return load_clip(str(tiny_clip_dir))


def make_generator(size=32, seed=0):
    torch.manual_seed(seed)
    return UnetGenerator(input_nc=1, output_nc=3, nz=NZ, num_downs=int(np.log2(size)), ngf=8).eval().requires_grad_(False)


def make_generate(size=32, seed=0):
    network = make_generator(size, seed)
    source = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return lambda z: network(source.expand(len(z), -1, -1, -1), z)


class Redness:
    """A differentiable stand-in for CLIP: how much red exceeds green and blue."""

    names = ["red"]

    def __call__(self, images):
        return (images[:, 0] - images[:, 1:].mean(1)).mean((1, 2)).unsqueeze(1)


class TwoColours:
    names = ["red", "blue"]

    def __call__(self, images):
        return torch.stack([Redness()(images)[:, 0], (images[:, 2] - images[:, :2].mean(1)).mean((1, 2))], dim=1)


# ---- loading and preprocessing ----------------------------------------------------------------
def test_tiny_clip_loads_through_the_user_loader_with_its_processor_settings(tiny_clip):
    assert tiny_clip.preprocess.resize == TINY_CLIP_RESOLUTION and tiny_clip.preprocess.crop == TINY_CLIP_RESOLUTION
    assert torch.allclose(tiny_clip.preprocess.mean.flatten(), torch.tensor([0.5, 0.4, 0.3]))
    assert torch.allclose(tiny_clip.preprocess.std.flatten(), torch.tensor([0.25, 0.2, 0.3]))
    text = tiny_clip.encode_text(["a red shoe", "a blue boot"])
    assert text.shape == (2, 16) and torch.allclose(text.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(text[0], text[1])
    images = tiny_clip.encode_images(torch.rand(3, 3, 64, 64) * 2 - 1)
    assert images.shape == (3, 16) and torch.allclose(images.norm(dim=1), torch.ones(3), atol=1e-5)


def test_missing_clip_names_what_to_do(tmp_path):
    with pytest.raises(ClipNotFoundError, match="no such folder"):
        load_clip(str(tmp_path / "nowhere" / "clip"))
    with pytest.raises(ClipNotFoundError, match="huggingface-cli download nobody/no-such-clip"):
        load_clip("nobody/no-such-clip", local_files_only=True)


def test_preprocessing_matches_the_clip_image_processor(tiny_clip_dir):
    """Our torch steps against transformers' PIL pipeline on a smooth 64 px image."""
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": 48}, crop_size={"height": 40, "width": 40})
    ramp = torch.linspace(0, 1, 64)
    image = torch.stack([ramp.view(1, -1).expand(64, 64), ramp.view(-1, 1).expand(64, 64), torch.full((64, 64), 0.3)])
    uint8 = (image * 255).round().to(torch.uint8)
    expected = processor(images=Image.fromarray(uint8.permute(1, 2, 0).numpy()), return_tensors="pt")["pixel_values"]
    ours = ClipPreprocess(48, 40, tuple(processor.image_mean), tuple(processor.image_std))(uint8[None].float() / 127.5 - 1)
    assert ours.shape == expected.shape == (1, 3, 40, 40)
    # PIL rounds the resized image to 8 bits: 1/255 of a pixel, / std (~0.27) in normalised units
    assert (ours - expected).abs().max() < 0.01  # measured: 0.005


def test_gradients_reach_z_through_clip_and_its_preprocessing(tiny_clip):
    generate = make_generate(size=64)  # 64 px outputs, resized to the tiny CLIP's 32
    scorer = ClipScorer(tiny_clip, ["a red shoe"], templates=["a photo of {}", "{}"], negative_prompt="a blue shoe")
    z = torch.randn(4, NZ, requires_grad=True)
    scorer(generate(z)).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert all(z.grad[i].abs().sum() > 0 for i in range(4))


def test_prompt_ensembles_negative_and_image_prompts(tiny_clip, tmp_path):
    single = ClipScorer(tiny_clip, ["red"])
    ensemble = ClipScorer(tiny_clip, ["red"], templates=["a photo of {}", "a drawing of {}"])
    expected = tiny_clip.encode_text(["a photo of red", "a drawing of red"]).mean(0)
    assert torch.allclose(ensemble.targets[0], expected / expected.norm(), atol=1e-6)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with_negative = ClipScorer(tiny_clip, ["red"], negative_prompt="blue", negative_weight=0.5)
    embeddings = tiny_clip.encode_images(images)
    blue = tiny_clip.encode_text(["blue"])[0]
    assert torch.allclose(with_negative(images)[:, 0], single(images)[:, 0] - 0.5 * embeddings @ blue, atol=1e-6)
    path = tmp_path / "target.png"
    Image.fromarray(((images[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()).save(path)
    by_image = ClipScorer(tiny_clip, [], image_prompts=[path])
    assert by_image.names == ["target.png"]
    assert by_image(images)[0, 0] > 0.99  # the image is its own best match
    with pytest.raises(PromptError, match="exactly once"):
        ClipScorer(tiny_clip, ["red"], templates=["a photo"])
    with pytest.raises(PromptError, match="does not exist"):
        ClipScorer(tiny_clip, [], image_prompts=[tmp_path / "missing.png"])


# ---- ranking and optimisation with a stand-in scorer -------------------------------------------
def test_rank_returns_the_true_top_k_best_first():
    generate, scorer = make_generate(), TwoColours()
    result = rank(generate, scorer, NZ, num_samples=40, chunk_size=7, top_k=5, generator=torch.Generator().manual_seed(3))
    codes = torch.randn(40, NZ, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        all_scores = scorer(generate(codes))  # (40, 2), computed in one batch here
    for prompt in range(2):
        assert torch.all(result.scores[prompt, :-1] >= result.scores[prompt, 1:])
        expected = all_scores[:, prompt].topk(5).values
        assert torch.allclose(result.scores[prompt], expected, atol=1e-5)
        with torch.no_grad():
            rescored = scorer(result.images[prompt])[:, prompt]
        assert torch.allclose(rescored, result.scores[prompt], atol=1e-5)
    assert result.z.shape == (2, 5, NZ) and result.images.shape == (2, 5, 3, 32, 32)


def test_optimize_beats_random_codes_and_its_own_start():
    generate, scorer = make_generate(), Redness()
    random_codes = torch.randn(64, NZ, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        random_mean = scorer(generate(random_codes)).mean()
    starts = torch.randn(4, NZ, generator=torch.Generator().manual_seed(2))
    result = optimize(generate, scorer, starts, steps=30, lr=0.1)
    assert result.trajectories.shape == (1, 31, 4) and result.steps_run == [30]
    assert not result.trajectories.requires_grad and not result.z.requires_grad  # no graph kept alive
    best = result.scores[0, 0]
    assert best > random_mean and best > result.trajectories[0, 0].max() + 0.01
    assert torch.all(result.scores[0, :-1] >= result.scores[0, 1:])
    with torch.no_grad():
        assert torch.allclose(scorer(generate(result.z[0]))[:, 0], result.scores[0], atol=1e-5)


def test_batched_starts_equal_starts_run_one_at_a_time():
    generate, scorer = make_generate(), Redness()
    starts = torch.randn(3, NZ, generator=torch.Generator().manual_seed(4))
    together = optimize(generate, scorer, starts, steps=10)
    alone = [optimize(generate, scorer, starts[i : i + 1], steps=10) for i in range(3)]
    for index in range(3):
        assert torch.allclose(together.trajectories[0, :, index], alone[index].trajectories[0, :, 0], atol=1e-4)


def test_prior_keeps_codes_near_the_origin_and_early_stop_ends_a_flat_search():
    generate, scorer = make_generate(), Redness()
    starts = torch.randn(4, NZ, generator=torch.Generator().manual_seed(5))
    free = optimize(generate, scorer, starts, steps=40, lr=0.2)
    held = optimize(generate, scorer, starts, steps=40, lr=0.2, prior_weight=10.0)
    assert held.z.pow(2).mean() < 0.5 * free.z.pow(2).mean()

    class Flat:
        names = ["flat"]

        def __call__(self, images):
            return images.mean((1, 2, 3)).unsqueeze(1) * 0

    flat = optimize(generate, Flat(), starts, steps=50, early_stop_patience=3)
    assert flat.steps_run == [3] and flat.trajectories.shape == (1, 4, 4)


def test_rank_then_optimize_starts_from_the_ranked_best_and_improves_on_them():
    generate, scorer = make_generate(), Redness()
    generator = torch.Generator().manual_seed(6)
    ranked = rank(generate, scorer, NZ, num_samples=32, top_k=4, generator=torch.Generator().manual_seed(6))
    result = rank_then_optimize(generate, scorer, NZ, num_samples=32, num_starts=4, generator=generator, steps=15)
    assert torch.allclose(result.trajectories[0, 0].sort(descending=True).values, ranked.scores[0], atol=1e-5)
    assert result.scores[0, 0] > ranked.scores[0, 0]


# ---- the command ------------------------------------------------------------------------------
def _edge_images(folder, count=2, size=48):
    folder.mkdir()
    for index in range(count):
        picture = np.full((size, 2 * size, 3), 255, np.uint8)
        picture[8 + index : 40, size + 10 : size + 30 + index] = 0  # an outline-ish block on the right half
        Image.fromarray(picture).save(folder / f"shoe_{index}.png")
    return folder


def test_guide_command_writes_a_grid_and_json_per_input(tiny_checkpoint, tiny_clip_dir, tmp_path):
    inputs = _edge_images(tmp_path / "inputs")
    target = tmp_path / "target.png"
    Image.fromarray(np.full((32, 32, 3), (200, 30, 30), np.uint8)).save(target)
    out_dir = tmp_path / "out"
    result = run_train(
        f"ckpt={tiny_checkpoint}", f"input={inputs}", "input_half=right", "prompt=[a red leather shoe,a white shoe]",
        f"image_prompt={target}", 'templates=["a photo of {}","{}"]', "negative_prompt=a blurry photo",
        "method=rank_then_optimize", "top_k=3", "rank.num_samples=12", "rank.chunk_size=5",
        "optimize.num_starts=3", "optimize.steps=4", f"clip.model={tiny_clip_dir}", f"out_dir={out_dir}",
        module="bicyclegan_pl.guide",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "guiding" in result.stderr  # progress bar
    for index in range(2):
        summary = json.loads((out_dir / f"shoe_{index}.json").read_text())
        assert [row["prompt"] for row in summary["rows"]] == ["a red leather shoe", "a white shoe", "target.png"]
        assert [row["kind"] for row in summary["rows"]] == ["text", "text", "image"]
        for row in summary["rows"]:
            assert len(row["scores"]) == 3 and row["scores"] == sorted(row["scores"], reverse=True)
            assert np.array(row["z"]).shape == (3, 8)
            assert np.array(row["trajectories"]).shape == (3, 5) and row["steps_run"] == 4
            assert max(row["scores"]) >= max(row["best_score_per_step"]) - 1e-5
        assert summary["settings"]["negative_prompt"] == "a blurry photo" and summary["method"] == "rank_then_optimize"
        grid = Image.open(out_dir / f"shoe_{index}.png")
        assert grid.width > 4 * 96 and grid.height > 3 * 96  # 3 rows of input + 3 outputs, 96 px cells


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["input=/nowhere/shoe.png", "prompt=red"], "input=/nowhere/shoe.png: no such file or folder"),
        (["prompt=red", "method=anneal"], "method=anneal: use one of rank, optimize, rank_then_optimize"),
        ([], "no prompt"),
        (["prompt=red", "clip.model=/nowhere/clip"], "no such folder"),
    ],
)
def test_guide_user_errors_are_messages(tiny_checkpoint, tiny_clip_dir, tmp_path, arguments, message):
    inputs = _edge_images(tmp_path / "inputs", count=1)
    result = run_train(
        f"ckpt={tiny_checkpoint}", f"input={inputs}", f"clip.model={tiny_clip_dir}", f"out_dir={tmp_path / 'out'}",
        *arguments, module="bicyclegan_pl.guide",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr and "Traceback" not in result.stderr
