"""The W&B dashboard: a sweep's runs share a group, carry tags and a job type, and `evaluate` logs
into the run that trained the checkpoint. Offline runs are read back from their `.wandb` files."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hydra.types import RunMode
from omegaconf import OmegaConf

from bicyclegan_pl.wandb_runs import dashboard_labels, evaluation_label, label_training_run, log_evaluation
from tests.cli import TINY, run_train
from tests.metric_fixtures import INCEPTION_FILE, write_random_inception_weights

# validation metrics with the fast conv features (`val/fid_conv`), or, in the slow variant, with the
# standard Inception (random weights written locally, no download) so that `val/fid` itself is logged:
# its 2048-dimensional FID alone costs about a CPU minute per job
FEATURES = {
    "conv": ([*TINY, "metrics.lpips=null"], "val/fid_conv"),
    "inception": (
        [o for o in TINY if not o.startswith(("metrics/feature_extractor", "data.val_size"))]
        + ["metrics/feature_extractor=inception", "metrics.feature_extractor.allow_download=false", "metrics.lpips=null",
           "metrics.samples_per_input=4", "data.val_size=4"],
        "val/fid",
    ),
}
FAST_METRICS = ["metrics/feature_extractor=conv", "metrics.lpips=null", "metrics.samples_per_input=4"]


# ---- reading an offline run: the .wandb transaction log (leveldb log format, protobuf records) ----

def wandb_records(path: Path):
    """The protobuf Records of a `.wandb` file: a 7-byte header, then 32 KiB blocks of chunks
    (CRC32 4, length 2, type 1: full/first/middle/last), a block's last < 7 bytes being padding."""
    from wandb.proto import wandb_internal_pb2

    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B", path
    position, parts = header, []
    while position + header <= len(data):
        left = block - position % block
        if left < header:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + header])
        position += header
        if kind == 0 and length == 0:
            position += left - header
            continue
        parts.append(data[position:position + length])
        position += length
        if kind in (1, 4):  # full, or last of a split record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def read_offline_run(folder: Path) -> dict:
    """run id, group, tags, job type, name, config keys, history rows and image files of one offline run."""
    (log,) = folder.glob("*.wandb")
    run: dict = {"config": {}, "history": [], "files": []}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(id=r.run_id, project=r.project, group=r.run_group, job_type=r.job_type, tags=list(r.tags),
                       name=r.display_name)
            run["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "files":
            run["files"] += [f.path for f in record.files.files]
    return run


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))  # not the latest-run link


# ---- a 2-job sweep and an evaluation, end to end ------------------------------------------------

@pytest.fixture(scope="module", params=["conv", pytest.param("inception", marks=pytest.mark.slow)])
def sweep(request, tmp_path_factory):
    """A 2-job sweep of a loss weight, offline; (its folder, the FID key its validation logs)."""
    overrides, fid_key = FEATURES[request.param]
    root = tmp_path_factory.mktemp(f"wandb_sweep_{request.param}")
    if request.param == "inception":
        overrides = [*overrides, f"paths.weights_dir={write_random_inception_weights(root / INCEPTION_FILE).parent}"]
    sweep_dir = root / "sweep"  # WANDB_MODE=offline: conftest's offline_environment
    result = run_train("-m", "model.loss_weights.kl=0.0,0.1", *overrides, "trainer.max_epochs=1",
                       f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir, fid_key


def test_sweep_jobs_share_a_group_and_carry_tags_job_type_config_metrics_and_samples(sweep):
    sweep, fid_key = sweep
    runs = []
    for job in ("0", "1"):
        (folder,) = offline_runs(sweep / job)
        runs.append(read_offline_run(folder))
        assert runs[-1]["id"] == (sweep / job / "wandb_run_id").read_text().strip()
    group = f"{sweep.parent.name}_{sweep.name}"  # <parent>_<sweep folder>: multirun/<name>/<time> -> <name>_<time>
    for job, (run, kl) in enumerate(zip(runs, ("0.0", "0.1"))):
        assert run["group"] == group and run["job_type"] == "train"
        assert run["tags"] == ["bicyclegan_synthetic", f"model.loss_weights.kl={kl}"]  # name + swept override only
        assert run["name"] == f"bicyclegan_synthetic-{job}" and run["project"] == "bicyclegan_pl"
        assert run["config"]["model"]["loss_weights"]["kl"] == float(kl)
        assert run["config"]["logger"]["wandb"]["group"] == group  # what the checkpoint's run_config keeps
        keys = set().union(*run["history"])
        assert {fid_key, "val/recon_l1", "train/vae_l1_step", "trainer/global_step"} <= keys
        fid = [row[fid_key] for row in run["history"] if fid_key in row]
        assert len(fid) == 1 and fid[0] > 0
        samples = [row for row in run["history"] if row.get("samples/_type") == "images/separated"]
        assert samples and any(f.startswith("media/images/samples_") for f in run["files"])
    assert runs[0]["id"] != runs[1]["id"]


def test_evaluate_logs_into_the_training_run(sweep):
    job = sweep[0] / "1"
    (trained,) = offline_runs(job)
    result = run_train(f"ckpt={job / 'checkpoints' / 'last.ckpt'}", *FAST_METRICS, module="bicyclegan_pl.evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = (job / "wandb_run_id").read_text().strip()
    assert f"logged to W&B run {run_id} as eval/val/*" in result.stdout
    (evaluated,) = [f for f in offline_runs(job) if f != trained]
    run = read_offline_run(evaluated)
    training = read_offline_run(trained)
    assert run["id"] == run_id and run["project"] == training["project"]
    # the run keeps its labels (a W&B run has one job type; the eval/ prefix marks the evaluation)
    assert (run["group"], run["tags"], run["job_type"]) == (training["group"], training["tags"], "train")
    (row,) = [r for r in run["history"] if "eval/iteration" in r]
    metrics = json.loads((job / "eval" / "last-val" / "metrics.json").read_text())["metrics"]
    assert row["eval/iteration"] == 2 and row["eval/val/fid_conv"] == pytest.approx(metrics["fid_conv"])
    assert row["eval/val/samples/_type"] == "image-file"


# ---- the choices themselves ---------------------------------------------------------------------

def _multirun_hydra(tmp_path: Path, task: list[str], command_line: list[str], params: dict | None = None):
    sweep_dir = tmp_path / "multirun" / "bicycle_lambda_kl" / "2024-05-01_12-00-00"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "multirun.yaml").write_text(OmegaConf.to_yaml({"hydra": {"overrides": {"task": command_line}}}))
    return OmegaConf.create({
        "mode": RunMode.MULTIRUN, "runtime": {"output_dir": str(sweep_dir / "3")}, "sweep": {"subdir": "3"},
        "job": {"num": 3}, "overrides": {"task": task}, "sweeper": {"params": params or {}},
    })


def test_a_job_is_tagged_with_its_swept_values_only(tmp_path):
    hydra_cfg = _multirun_hydra(
        tmp_path,
        task=["+sweep=bicycle_lambda_kl", "model.loss_weights.kl=0.1", "seed=2", "trainer.max_epochs=3"],
        command_line=["+sweep=bicycle_lambda_kl", "seed=1,2", "trainer.max_epochs=3"],
        params={"model.loss_weights.kl": "0.0,0.001,0.01,0.1"},
    )
    labels = dashboard_labels("bicycle_lambda_kl", hydra_cfg)
    assert labels == {
        "group": "bicycle_lambda_kl_2024-05-01_12-00-00",
        "tags": ["bicycle_lambda_kl", "model.loss_weights.kl=0.1", "seed=2"],
        "job_type": "train",
        "name": "bicycle_lambda_kl-3",
    }
    # a single run: no group (a sweep of one), the name as its tag
    assert dashboard_labels("bicycle_reference", None) == {"group": None, "tags": ["bicycle_reference"], "job_type": "train"}


def test_values_the_user_gives_win_and_disabled_mode_is_respected(monkeypatch):
    wandb_cfg = OmegaConf.create({"_target_": "lightning.pytorch.loggers.WandbLogger", "name": "${name}", "offline": True,
                                  "group": "my_study", "tags": ["baseline"], "job_type": None})
    monkeypatch.setenv("WANDB_MODE", "disabled")
    label_training_run(wandb_cfg, "bicycle_reference")
    assert (wandb_cfg.group, list(wandb_cfg.tags), wandb_cfg.job_type) == ("my_study", ["baseline"], "train")
    assert wandb_cfg.offline is False  # else Lightning's offline=True would set WANDB_MODE=dryrun over it


def test_evaluate_logs_nothing_for_a_run_without_wandb(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    checkpoint_path = run_dir / "checkpoints" / "last.ckpt"
    csv_only = {"run_config": {"logger": {"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger"}}}, "iteration": 2}
    assert log_evaluation(checkpoint_path, csv_only, run_dir / "eval" / "last-val", {"fid": 1.0}) is None
    # a W&B logger and an id, but no local run (trained with WANDB_MODE=disabled): nothing either
    (run_dir / "wandb_run_id").write_text("abc12345\n")
    with_wandb = {"run_config": {"logger": {"wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger",
                                                      "save_dir": str(run_dir), "offline": True}}}}
    assert log_evaluation(checkpoint_path, with_wandb, run_dir / "eval" / "last-val", {"fid": 1.0}) is None
    assert not (run_dir / "wandb").exists()
    assert evaluation_label(run_dir / "eval" / "last-edges2shoes-val", checkpoint_path) == "edges2shoes-val"
    assert evaluation_label(tmp_path / "elsewhere", checkpoint_path) == "elsewhere"


def test_evaluate_respects_wandb_mode_disabled(sweep, monkeypatch):
    sweep, _ = sweep
    checkpoint_path = sweep / "0" / "checkpoints" / "last.ckpt"
    before = offline_runs(sweep / "0")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    assert log_evaluation(checkpoint_path, checkpoint, sweep / "0" / "eval" / "x", {"fid": 1.0}) is None
    assert offline_runs(sweep / "0") == before
