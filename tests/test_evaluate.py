"""`python -m bicyclegan_pl.evaluate` as a user runs it, and the metrics callback's settings check."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from bicyclegan_pl.rendering import HEADER_HEIGHT
from bicyclegan_pl.config import RESOLVERS
from bicyclegan_pl.evaluate import DataMismatchError, check_data_matches_training, overridden_data_keys
from tests.cli import TINY, run_train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    result = run_train(*TINY, "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


FAST_METRICS = ["metrics/feature_extractor=conv", "metrics.lpips=null", "metrics.samples_per_input=6"]


def test_evaluate_writes_metrics_json_table_and_samples_next_to_the_run(trained_run, bicyclegan_cache):
    checkpoint = trained_run / "checkpoints" / "last.ckpt"
    result = run_train(f"ckpt={checkpoint}", *FAST_METRICS, module="bicyclegan_pl.evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    out_dir = trained_run / "eval" / "last-val"
    summary = json.loads((out_dir / "metrics.json").read_text())
    metrics = summary["metrics"]
    assert set(metrics) == {
        "fid_conv", "kid_mean_conv", "kid_std_conv", "is_mean_conv", "is_std_conv", "mode_coverage", "mode_kl", "off_palette", "mask_iou",
        "encoded_accuracy",
    }
    assert metrics["fid_conv"] > 0 and 0.0 <= metrics["mode_coverage"] <= 1.0 and 0.0 <= metrics["mask_iou"] <= 1.0
    assert summary["num_inputs"] == 8 and summary["split"] == "val" and summary["iteration"] == 2
    assert summary["protocol"]["feature_extractor"].startswith("conv-random")
    assert summary["data"]["_target_"].endswith("SyntheticPairedDataModule")  # the checkpoint's own data
    assert "torchmetrics" in summary["versions"]
    assert "directions" not in summary  # one direction: its counts and protocol are at the top level
    table = (out_dir / "metrics.md").read_text()
    assert "| mode coverage |" in table and "not comparable with published numbers" in table
    assert "8 inputs, compared with real B; random z per input: 1 for FID/KID/IS, 6 for LPIPS" in table
    def grid_rows_equal_columns(path):  # 8 columns: input, ground truth, encoded, 5 random z
        grid = Image.open(path)
        return grid.height - HEADER_HEIGHT == grid.width

    assert grid_rows_equal_columns(out_dir / "samples.png")  # the first 8 inputs
    assert "evaluating" in result.stderr  # progress bar

    # the real-image statistics are cached: a second evaluation loads them; +data.<key> edits
    # the checkpoint's data config (here a key the cache ignores)
    cached = summary["protocol"]["real_statistics_cache"]
    assert cached.startswith(str(bicyclegan_cache)) and (bicyclegan_cache / "real_statistics").exists()
    again = run_train(
        f"ckpt={checkpoint}", *FAST_METRICS, "max_inputs=4", "+data.batch_size=2", f"out_dir={out_dir}-4",
        module="bicyclegan_pl.evaluate",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((out_dir.parent / "last-val-4" / "metrics.json").read_text())
    assert second["num_inputs"] == 4 and second["data"] == {**summary["data"], "batch_size": 2}
    assert grid_rows_equal_columns(out_dir.parent / "last-val-4" / "samples.png")  # 8 rows from batches of 2


@pytest.mark.slow  # test_evaluations_on_two_datasets_leave_one_folder_each evaluates on other data by name too
def test_evaluate_on_other_data_by_name(trained_run):
    checkpoint = trained_run / "checkpoints" / "last.ckpt"
    result = run_train(
        f"ckpt={checkpoint}", "data=synthetic", "data.crop_size=32", "data.val_size=4", "data.num_appearances=2",
        *FAST_METRICS, "out_dir=" + str(trained_run / "eval" / "other"), module="bicyclegan_pl.evaluate",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((trained_run / "eval" / "other" / "metrics.json").read_text())
    assert summary["num_inputs"] == 4 and summary["data"]["num_appearances"] == 2
    metrics = summary["metrics"]  # a 2-iteration model: any appearance, or none recognisable
    assert 0.0 <= metrics["mode_coverage"] <= 1.0 and 0.0 <= metrics["off_palette"] <= 1.0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["ckpt=/nowhere/last.ckpt"], "Checkpoint /nowhere/last.ckpt does not exist"),
        (["metrics.feature_extractor.allow_download=false", "metrics.lpips=null"], "weights-inception-2015-12-05-6726825d.pth"),
        (["split=test", *FAST_METRICS], "has only a validation split"),
    ],
)
def test_evaluate_user_errors_are_messages_not_tracebacks(trained_run, tmp_path, arguments, message):
    checkpoint = trained_run / "checkpoints" / "last.ckpt"
    result = run_train(
        f"ckpt={checkpoint}", f"paths.weights_dir={tmp_path}", f"out_dir={tmp_path / 'out'}", *arguments,
        module="bicyclegan_pl.evaluate",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_checkpoint_monitoring_a_metric_must_look_when_it_is_computed(tmp_path):
    result = run_train(
        *TINY, "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={tmp_path / 'run'}",
        "callbacks.metrics.every_n_epochs=2", "callbacks.model_checkpoint.monitor=val/fid_conv",
    )
    assert result.returncode == 2
    assert "callbacks.model_checkpoint.every_n_epochs=2" in result.stderr and "Traceback" not in result.stderr


# ---- evaluation data unlike the training data; one folder per dataset --------------------------

def _tiny_paired_folder(root):
    """A pix2pix AB folder (train/ and val/, 64x32 pairs) in the edges2shoes layout."""
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 2), ("val", 4)):
        (root / split).mkdir(parents=True)
        for index in range(count):
            pixels = (torch.rand(32, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(root / split / f"{index}.png")
    return root


def test_evaluate_refuses_a_data_group_whose_defaults_differ_from_training(trained_run, tmp_path):
    checkpoint = trained_run / "checkpoints" / "last.ckpt"  # trained on synthetic data at 32 px
    result = run_train(
        f"ckpt={checkpoint}", "data=edges2shoes", *FAST_METRICS, f"out_dir={tmp_path / 'out'}",
        module="bicyclegan_pl.evaluate",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "crop_size (256 here, 32 in training)" in result.stderr and "Pass data.crop_size=32" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "metrics.json").exists()


def test_evaluations_on_two_datasets_leave_one_folder_each(trained_run, tmp_path):
    checkpoint = trained_run / "checkpoints" / "last.ckpt"
    # an explicit override accepts a difference (with a warning) and names the folder after the data
    synthetic = run_train(
        f"ckpt={checkpoint}", "data=synthetic", "data.crop_size=64", "data.val_size=4", "data.num_appearances=2",
        *FAST_METRICS, module="bicyclegan_pl.evaluate",
    )
    assert synthetic.returncode == 0, synthetic.stderr[-3000:]
    assert "data.crop_size=64 differs from the checkpoint's training data (32)" in synthetic.stderr
    shoes = _tiny_paired_folder(tmp_path / "tiny_shoes")
    paired = run_train(
        f"ckpt={checkpoint}", "data=edges2shoes", f"data.root={shoes}", "data.crop_size=32", "data.val_size=4",
        *FAST_METRICS, module="bicyclegan_pl.evaluate",
    )
    assert paired.returncode == 0, paired.stderr[-3000:]
    assert "differs from the checkpoint's training data" not in paired.stderr  # same size and channels
    first = json.loads((trained_run / "eval" / "last-synthetic-val" / "metrics.json").read_text())
    second = json.loads((trained_run / "eval" / "last-edges2shoes-tiny_shoes-val" / "metrics.json").read_text())
    assert first["data"]["_target_"].endswith("SyntheticPairedDataModule") and first["data"]["crop_size"] == 64
    assert first["num_inputs"] == 4 and first["data"]["num_appearances"] == 2
    assert 0.0 <= first["metrics"]["mode_coverage"] <= 1.0 and 0.0 <= first["metrics"]["off_palette"] <= 1.0
    assert second["data"]["_target_"].endswith("PairedFolderDataModule") and second["num_inputs"] == 4


def test_only_differences_set_on_the_command_line_are_accepted():
    trained = {"_target_": "Synthetic", "crop_size": 32, "input_nc": 1, "output_nc": 3, "num_appearances": 4}
    chosen = {"_target_": "Paired", "direction": "AtoB", "load_size": 256, "crop_size": 256, "input_nc": 1, "output_nc": 3}
    with pytest.raises(DataMismatchError, match=r"crop_size \(256 here, 32 in training\)\. Pass data\.crop_size=32 to"):
        check_data_matches_training(chosen, trained, overridden=set())
    # direction and load_size: not in the synthetic training config, so not compared
    assert check_data_matches_training(chosen, trained, overridden={"crop_size"}) == [
        "data.crop_size=256 differs from the checkpoint's training data (32); evaluating with it, as set on the command line"
    ]
    paired = {**chosen, "direction": "BtoA", "crop_size": 64, "load_size": 64}
    with pytest.raises(DataMismatchError, match=r"direction \('AtoB' here, 'BtoA' in training\).*load_size.*crop_size"):
        check_data_matches_training(chosen, paired, overridden={"root"})
    assert check_data_matches_training(paired, paired, overridden=set()) == []


def test_channel_counts_the_networks_were_built_for_cannot_be_overridden():
    trained = {"crop_size": 32, "input_nc": 1, "output_nc": 3}
    with pytest.raises(DataMismatchError, match=r"built for input_nc=1 but the evaluation data has input_nc=3; pass data\.input_nc=1"):
        check_data_matches_training({**trained, "input_nc": 3}, trained, overridden={"input_nc"})


def test_overridden_data_keys_are_the_data_keys_of_the_command_line():
    overrides = ["data=edges2shoes", "data.crop_size=64", "+data.root=/x", "++data.direction=BtoA", "split=test", "seed=1"]
    assert overridden_data_keys(overrides) == {"crop_size", "root", "direction"}


@pytest.mark.parametrize(
    "group, root, folder",
    [
        (None, None, "last-val"),  # the checkpoint's own data: the name report --eval reads by default
        (None, "/data/moved", "last-val"),  # +data.root=... edits the checkpoint's data: still its own
        ("synthetic", None, "last-synthetic-val"),
        ("edges2shoes", "/data/edges2shoes", "last-edges2shoes-val"),
        ("edges2shoes", "/data/edges2shoes_mini/", "last-edges2shoes-edges2shoes_mini-val"),
    ],
)
def test_eval_dir_names_the_dataset(group, root, folder):
    assert RESOLVERS["eval_dir"]("/runs/a/checkpoints/last.ckpt", "val", group, root) == f"/runs/a/eval/{folder}"


class _Identity:
    """A 'translator' whose output is its input (RGB inputs), or a constant grey image."""

    device = torch.device("cpu")

    def __init__(self, constant: bool = False):
        self.constant = constant

    def sample_outputs(self, batch, num_samples, generator):
        images = batch["A"]
        return (torch.zeros_like(images) if self.constant else images).unsqueeze(0).expand(num_samples, *images.shape)


def test_a_chosen_clip_space_scores_preservation_of_any_system(tiny_clip_dir):
    from bicyclegan_pl.clip import load_clip
    from bicyclegan_pl.evaluate import clip_embedding_pair
    from bicyclegan_pl.metrics.semantic import evaluate_semantic_preservation

    clip = load_clip(str(tiny_clip_dir))
    batches = [{"A": torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) * 2 - 1} for i in range(2)]
    kept = evaluate_semantic_preservation(clip_embedding_pair(_Identity(), clip, torch.Generator()), batches)
    assert kept["space_cosine"] == pytest.approx(1.0, abs=1e-5) and kept["travel_cosine"] == pytest.approx(1.0, abs=1e-5)
    lost = evaluate_semantic_preservation(clip_embedding_pair(_Identity(constant=True), clip, torch.Generator()), batches)
    assert lost["travel_cosine"] == pytest.approx(0.0, abs=1e-5)  # one output for every input: no vector survives
    assert lost["space_cosine"] < 0.999


def test_evaluate_in_a_chosen_clip_space(trained_run, tiny_clip_dir, tmp_path):
    checkpoint = trained_run / "checkpoints" / "last.ckpt"
    result = run_train(
        f"ckpt={checkpoint}", *FAST_METRICS, f"clip.model={tiny_clip_dir}", f"out_dir={tmp_path}",
        module="bicyclegan_pl.evaluate",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["clip_model"] == str(tiny_clip_dir)
    assert -1 <= summary["metrics"]["clip_space_cosine"] <= 1 and -1 <= summary["metrics"]["clip_travel_cosine"] <= 1
    assert "| CLIP-space cosine |" in (tmp_path / "metrics.md").read_text()
