"""`python -m bicyclegan_pl.train` as a user runs it: run folder contents, resume, errors, multirun + report."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from tests.cli import SHARED_DATA, TINY, run_train


def test_training_run_leaves_checkpoints_samples_config_and_curves(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(*TINY, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run_dir / "checkpoints").glob("best-epoch*.ckpt"))) == 1
    # sample grids after every epoch: 4 rows (inputs) x 6 columns (input, truth, encoded, 3 z)
    grids = sorted((run_dir / "samples").glob("epoch_*.png"))
    assert [g.name for g in grids] == ["epoch_000.png", "epoch_001.png"]
    image = Image.open(grids[-1])
    tile = 96 + 2  # 32 px shown at 3x, 2 px padding
    assert image.width == 6 * tile + 2 and image.height == 4 * tile + 2 + 16
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    # loss curves: CSV per step, and an offline W&B run to `wandb sync` later
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for term in ("vae_l1", "kl", "vae_gan", "clr_gan", "clr_latent", "d_vae", "d_clr"):
        assert f"train/{term}_step" in header and f"train/{term}_epoch" in header
    assert "val/recon_l1" in header and "val/diversity_l1" in header
    # evaluation metrics after the last epoch (callbacks.metrics); LPIPS skipped with the file named
    for metric in ("fid_conv", "kid_mean_conv", "is_mean_conv", "mode_coverage", "mode_kl", "off_palette", "mask_iou", "encoded_accuracy"):
        assert f"val/{metric}" in header
    assert "lpips_diversity is skipped" in result.stderr and "alexnet-owt-7be5be79.pth" in result.stderr
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    prefixes = {key.split(".")[0] for key in checkpoint["state_dict"]}
    assert prefixes == {"generator", "encoder", "discriminator_vae", "discriminator_clr"}  # no metric networks
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("*.wandb"))
    # the checkpoint carries the iteration counter and the resolved config, the one the run folder
    # shows, which rebuilds exactly the trained networks
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["iteration"] == 4  # 2 epochs x (8 items / batch 4)
    assert _adam_steps(checkpoint) == [4, 4, 4, 4]  # G, E, D_vae, D_clr: once per iteration
    resolved = OmegaConf.to_container(OmegaConf.load(run_dir / "config_resolved.yaml"))
    assert checkpoint["run_config"] == resolved
    instantiate(resolved["model"], _convert_="all").load_state_dict(checkpoint["state_dict"])

    # resume the interrupted run from its last checkpoint to a third epoch
    result = run_train(*TINY, "trainer.max_epochs=3", "logger=csv", f"hydra.run.dir={run_dir}", "ckpt_path=last")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["iteration"] == 6  # continued, not restarted
    assert (run_dir / "samples" / "epoch_002.png").is_file()


def _adam_steps(checkpoint: dict) -> list[int]:
    """How often each optimiser of a checkpoint stepped (Adam's count), in the system's order."""
    return [int(state["state"][0]["step"]) for state in checkpoint["optimizer_states"]]


@pytest.mark.slow  # the multirun test runs four experiments from the command line the same way
def test_experiment_runs_exactly_as_written(tmp_path):
    result = run_train("+experiment=bicycle_order_c", *TINY, "trainer.max_epochs=1", "logger=csv",
                       f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    # seed 000's split cLR order steps G three times an iteration: 2 iterations (8 items, batch 4)
    assert checkpoint["iteration"] == 2 and _adam_steps(checkpoint) == [6, 2, 2, 2]


def test_unknown_experiment_lists_the_options():
    result = run_train("+experiment=bicycle_nope")
    assert result.returncode != 0
    assert "Could not find 'experiment/bicycle_nope'" in result.stderr
    assert "bicycle_order_b" in result.stderr  # Hydra lists the available experiments


def test_unknown_config_key_is_named():
    result = run_train("model.not_a_key=1")
    assert result.returncode != 0 and "not_a_key" in result.stderr


@pytest.mark.parametrize("dataset, experiment", [("edges2shoes", []), ("monet2photo", ["+experiment=cyclegan_monet"])])
def test_missing_dataset_names_path_and_download_command(tmp_path, dataset, experiment):
    missing = tmp_path / "datasets" / dataset
    run_dir = tmp_path / "run"
    result = run_train(*experiment, f"data={dataset}", f"data.root={missing}", f"hydra.run.dir={run_dir}")  # default loggers
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert f"python -m bicyclegan_pl.data.download {dataset}" in result.stderr
    assert "Traceback" not in result.stderr
    # stopped before any logger opened a run: no W&B run, no CSV logs for a training that never began
    assert not (run_dir / "wandb").exists() and not (run_dir / "csv").exists()


def test_bad_schedule_is_reported_without_traceback(tmp_path):
    result = run_train("model.schedule=[{name: p, step: [X], backward: [{terms: [kl]}]}]", "logger=csv",
                       f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "unknown optimiser 'X'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not (SHARED_DATA / "edges2shoes_mini").is_dir(), reason="needs ../shared/data/edges2shoes_mini")
def test_trains_on_real_edges2shoes_subset(tmp_path):
    result = run_train(
        "data=edges2shoes", f"data.root={SHARED_DATA / 'edges2shoes_mini'}", "data.direction=BtoA",
        "data.val_size=4", "data.num_workers=0",
        *[o for o in TINY if not o.startswith("data.train_size") and not o.startswith("data.val_size")],
        "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "logger=csv", f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "samples" / "epoch_000.png").is_file()


def test_multirun_sweep_gives_one_folder_and_wandb_run_per_job_and_report(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_train(
        "-m", "+sweep=bicycle_accum_stepwise", *TINY, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    # each job trained its own accumulation (2 iterations): how often G, E, D_vae, D_clr stepped
    steps = [[4, 4, 2, 2], [6, 4, 2, 2], [2, 2, 2, 2], [4, 4, 2, 2]]  # accum_1_stepwise .. accum_4_stepwise
    for job, expected in zip(jobs, steps):
        checkpoint = torch.load(job / "checkpoints" / "last.ckpt", weights_only=False)
        assert _adam_steps(checkpoint) == expected, job.name
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
    report = run_train(str(sweep_dir), module="bicyclegan_pl.report")
    assert report.returncode == 0, report.stderr
    table = [line for line in report.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 4  # header + one row per job
    assert "val/recon_l1" in table[0]
    assert all(f"bicycle_accum_{i}" in report.stdout for i in range(1, 5))
    assert report.stdout.count("_stepwise") >= 3
    assert (sweep_dir / "report.png").stat().st_size > 10_000


def test_training_without_any_logger(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(*TINY, "trainer.max_epochs=1", "logger=none", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "csv").exists()
