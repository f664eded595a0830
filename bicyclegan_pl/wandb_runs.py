"""How runs appear on the W&B dashboard: group, tags, job type and name of a training run, and
the evaluation of a checkpoint logged into the W&B run that trained it.

Training (``label_training_run``, called by train.py before the logger is built); values the user
gives in ``logger.wandb.*`` always win:

* ``group``: the sweep. A job of a Hydra multirun gets the sweep folder's last two path components
  joined by ``_`` (``multirun/<name>/<time>`` -> ``<name>_<time>``; no ``/``, which W&B group pages
  have not always handled), so all jobs of one ``-m`` launch, and their resumes, share it. A single
  run has no group: it is a sweep of one, and the dashboard lists it on its own.
* ``tags``: the run's ``name`` (the experiment) and, in a multirun, each swept override of this job
  as ``key=value`` (``model.loss_weights.kl=0.1``). Swept keys are those of ``hydra.sweeper.params``
  and the command-line overrides with several values (read from the sweep's ``multirun.yaml``);
  overrides shared by every job are in the run's config, not in its tags.
* ``job_type``: ``train``.
* ``name``: in a multirun, ``<name>-<job number>`` (the job folder), unless set by the user.

With ``WANDB_MODE=disabled`` the logger's ``offline`` flag is turned off, because Lightning's
``WandbLogger(offline=True)`` would set ``WANDB_MODE=dryrun`` and overrule it.

Evaluation (``log_evaluation``, called by evaluate.py): when the checkpoint's run folder holds a
W&B run (its ``wandb_run_id`` file and the run's local files under ``<save_dir>/wandb``), the
metrics and sample grids are logged to that same run, resumed by id, in the mode it was trained in
(offline or online; ``WANDB_MODE`` overrides, ``disabled`` logs nothing). Keys are
``eval/<evaluation>/<metric>`` with ``eval/iteration`` (the checkpoint's iteration) as their x-axis;
``<evaluation>`` is the evaluation folder's name without the checkpoint's (``val``,
``edges2shoes-val``), so evaluations of several checkpoints of a run form one curve per split and
dataset. The run keeps its job type ``train``: a W&B run has a single job type, and resuming it with
another one relabels the whole run (the documented way to change it, wandb/wandb#9685), which would
hide the training run from a ``job_type=train`` filter; the ``eval/`` prefix marks the evaluation.
"""
from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from bicyclegan_pl.config import _run_dir

#: W&B limits: tags of at most 64 characters, groups of at most 128 (wandb/wandb#1519)
MAX_TAG = 64
MAX_GROUP = 128
TRAIN_JOB = "train"


def _hydra() -> Any | None:
    """Hydra's config of this job, or None outside a Hydra app (tests calling train() directly)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _is_multirun(hydra_cfg: Any) -> bool:
    from hydra.types import RunMode

    return hydra_cfg is not None and hydra_cfg.get("mode") == RunMode.MULTIRUN


def sweep_folder(hydra_cfg: Any) -> Path:
    """The multirun's folder: this job's output folder less ``hydra.sweep.subdir`` (the job number by
    default), so the timestamp in ``hydra.sweep.dir`` is the one the launcher used."""
    folder = Path(hydra_cfg.runtime.output_dir)
    for _ in Path(str(hydra_cfg.sweep.subdir)).parts:
        folder = folder.parent
    return folder


def sweep_group(folder: Path) -> str:
    """``<parent>_<folder>`` of the sweep folder: ``multirun/bicycle_lambda/2024-05-01_12-00-00``
    -> ``bicycle_lambda_2024-05-01_12-00-00``."""
    parts = [p for p in folder.parts[-2:] if p not in ("/", "")]
    return "_".join(parts)[-MAX_GROUP:]


def _key(override: Any) -> str:
    return str(override.key_or_group)


def swept_keys(hydra_cfg: Any, folder: Path) -> set[str]:
    """Keys that take several values in this sweep: ``hydra.sweeper.params`` and the sweep overrides
    of the launching command line (``multirun.yaml``, written by Hydra before the jobs start)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    params = hydra_cfg.get("sweeper", {}).get("params") or {}
    keys = {_key(o) for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items()])}
    launched = folder / "multirun.yaml"
    if launched.is_file():
        try:
            command_line = (yaml.safe_load(launched.read_text()) or {})["hydra"]["overrides"]["task"]
            keys |= {_key(o) for o in parser.parse_overrides(list(command_line or [])) if o.is_sweep_override()}
        except Exception as error:  # noqa: BLE001  (a label is not worth failing a run over)
            warnings.warn(f"W&B tags: could not read the swept keys from {launched}: {error}", stacklevel=2)
    return keys


def job_tags(name: str | None, hydra_cfg: Any | None) -> list[str]:
    """The experiment name, then this job's value of every swept key (``key=value``)."""
    tags = [str(name)] if name else []
    if _is_multirun(hydra_cfg):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        swept = swept_keys(hydra_cfg, sweep_folder(hydra_cfg))
        for override in OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task)):
            if _key(override) in swept and not override.is_delete() and not override.is_sweep_override():
                tags.append(f"{_key(override)}={override.get_value_element_as_str()}")
    unique = list(dict.fromkeys(tag[:MAX_TAG] for tag in tags))
    return unique


def dashboard_labels(name: str | None, hydra_cfg: Any | None) -> dict[str, Any]:
    """group, tags, job_type (and, in a multirun, name) of a training run; see the module's doc."""
    labels: dict[str, Any] = {"group": None, "tags": job_tags(name, hydra_cfg), "job_type": TRAIN_JOB}
    if _is_multirun(hydra_cfg):
        labels["group"] = sweep_group(sweep_folder(hydra_cfg))
        labels["name"] = f"{name}-{hydra_cfg.job.num}"
    return labels


def label_training_run(wandb_cfg: DictConfig, name: str | None) -> None:
    """Fill ``logger.wandb``'s group, tags and job_type (and a multirun job's name) where the user
    left them unset (null or absent), in place; turn ``offline`` off under ``WANDB_MODE=disabled``."""
    labels = dashboard_labels(name, _hydra())
    raw = OmegaConf.to_container(wandb_cfg, resolve=False)
    with open_dict(wandb_cfg):
        for key in ("group", "tags", "job_type"):
            if wandb_cfg.get(key) is None and labels[key] is not None:
                wandb_cfg[key] = labels[key]
        # the default name is `${name}` (conf/logger/wandb.yaml): a job of a sweep adds its number
        if "name" in labels and raw.get("name") in (None, "${name}"):
            wandb_cfg.name = labels["name"]
        if os.environ.get("WANDB_MODE", "").lower() == "disabled" and wandb_cfg.get("offline"):
            wandb_cfg.offline = False


# ---- evaluation -----------------------------------------------------------------------------

def _wandb_logger_config(run_config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    wandb_cfg = (run_config.get("logger") or {}).get("wandb")
    if isinstance(wandb_cfg, Mapping) and str(wandb_cfg.get("_target_", "")).endswith("WandbLogger"):
        return wandb_cfg
    return None


def training_wandb_run(checkpoint_path: str | Path, run_config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The W&B run a checkpoint was trained in, as ``wandb.init`` arguments, or None when its run
    folder has none (csv logger, ``WANDB_MODE=disabled`` during training, an older run folder)."""
    wandb_cfg = _wandb_logger_config(run_config)
    run_dir, _ = _run_dir(str(checkpoint_path))
    id_file = run_dir / "wandb_run_id"
    if wandb_cfg is None or not id_file.is_file() or not id_file.read_text().strip():
        return None
    run_id = id_file.read_text().strip()
    # the run's files live in <save_dir>/wandb; the default save_dir is the run folder, which may
    # have moved since training (a copied or renamed folder): follow the folder the checkpoint is in
    trained_in = str((run_config.get("paths") or {}).get("output_dir", ""))
    save_dir = str(wandb_cfg.get("save_dir") or wandb_cfg.get("dir") or run_dir)
    if save_dir == trained_in or not Path(save_dir).is_dir():
        save_dir = str(run_dir)
    if not glob.glob(os.path.join(glob.escape(save_dir), "wandb", f"*run-*-{glob.escape(run_id)}*")):
        return None
    offline = bool(wandb_cfg.get("offline"))
    init: dict[str, Any] = {
        "id": run_id,
        "project": wandb_cfg.get("project"),
        "entity": wandb_cfg.get("entity"),
        "dir": save_dir,
        "resume": "allow",  # "must" needs the server, which an offline run does not reach
    }
    if offline:
        # an offline run cannot ask the server what the run is, and its file is synced as it is:
        # repeat the run's labels so the sync does not blank them
        init.update({k: wandb_cfg.get(k) for k in ("name", "group", "tags", "job_type") if wandb_cfg.get(k)})
    if not os.environ.get("WANDB_MODE"):
        init["mode"] = "offline" if offline else "online"
    return init


def evaluation_label(out_dir: str | Path, checkpoint_path: str | Path) -> str:
    """``eval/<label>/``: the evaluation folder's name without the leading ``<checkpoint name>-``."""
    folder, stem = Path(out_dir).name, Path(checkpoint_path).stem
    return folder[len(stem) + 1:] if folder.startswith(f"{stem}-") and len(folder) > len(stem) + 1 else folder


def _evaluation_settings(wandb: Any) -> Any:
    """Quiet, and nothing that would replace the training's files in the run on sync: no console
    capture (output.log), no system metadata (the command line) or requirements, no system stats.
    Settings this wandb version does not have are left out."""
    wanted = {"console": "off", "quiet": True, "x_disable_meta": True, "x_disable_stats": True, "x_save_requirements": False}
    known = getattr(wandb.Settings, "model_fields", {})
    return wandb.Settings(**{k: v for k, v in wanted.items() if k in known})


def log_evaluation(
    checkpoint_path: str | Path,
    checkpoint: Mapping[str, Any],
    out_dir: str | Path,
    metrics: Mapping[str, float],
    images: Mapping[str, str | Path] | None = None,
) -> str | None:
    """Log an evaluation's metrics and images (name -> PNG file) to the checkpoint's W&B run.

    Returns the run id logged to, or None (silently) when the checkpoint's run has no W&B run or
    W&B is disabled. A W&B failure is a warning: the evaluation's files are already written.
    """
    if os.environ.get("WANDB_MODE", "").lower() == "disabled":
        return None
    init = training_wandb_run(checkpoint_path, checkpoint.get("run_config") or {})
    if init is None:
        return None
    label = evaluation_label(out_dir, checkpoint_path)
    iteration = int(checkpoint.get("iteration", 0))
    try:
        import wandb

        run = wandb.init(**init, settings=_evaluation_settings(wandb))
        try:
            run.define_metric("eval/iteration")
            run.define_metric(f"eval/{label}/*", step_metric="eval/iteration")
            row: dict[str, Any] = {f"eval/{label}/{key}": value for key, value in metrics.items()}
            row.update({f"eval/{label}/{key}": wandb.Image(str(path)) for key, path in (images or {}).items()})
            row["eval/iteration"] = iteration
            run.log(row)
        finally:
            run.finish()
    except Exception as error:  # noqa: BLE001  (W&B's errors vary by mode and version)
        warnings.warn(f"could not log the evaluation to W&B run {init['id']}: {error}", stacklevel=2)
        return None
    offline = init.get("mode", os.environ.get("WANDB_MODE", "")) in ("offline", "dryrun")
    sync = f"; upload with: wandb sync {Path(init['dir']) / 'wandb'}" if offline else ""
    print(f"logged to W&B run {init['id']} as eval/{label}/*{sync}")
    return str(init["id"])
