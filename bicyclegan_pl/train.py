"""Training entry point: ``python -m bicyclegan_pl.train [+experiment=NAME] [key=value ...]``.

Composes the Hydra config in conf/, instantiates data, model, callbacks, loggers and trainer,
and fits. ``ckpt_path`` (conf/train.yaml) says whether to resume: ``auto`` (the default) resumes
from ``<run folder>/checkpoints/last.ckpt`` when there is one, so an interrupted run continues
with ``hydra.run.dir=<its folder>`` and a requeued Slurm job picks up where it stopped.
A stop signal saves ``last.ckpt`` and exits with 128 + the signal number (`preemption`).
"""
from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.rank_zero import rank_zero_only

from bicyclegan_pl.checkpoint_io import AtomicCheckpointIO
from bicyclegan_pl.config import register_resolvers, user_errors_as_messages
from bicyclegan_pl.preemption import TrainingInterrupted, exit_after_interruption, launcher_handlers
from bicyclegan_pl.run_folder import RunFolderLock, resolve_resume, wandb_run_id
from bicyclegan_pl.runtime import distributed  # noqa: F401  (registers the ddp_manual_sync strategy)
from bicyclegan_pl.runtime.allocator import keep_freed_memory
from bicyclegan_pl.wandb_runs import label_training_run

register_resolvers()


def _instantiate_all(section: DictConfig | None) -> list[Any]:
    if not section:
        return []
    return [instantiate(item, _convert_="all") for item in section.values() if item is not None and "_target_" in item]


def _finish_wandb() -> None:
    """Close the W&B run so each multirun job is its own run and offline runs keep their config."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def _keep_wandb_run(cfg: DictConfig, output_dir: Path) -> None:
    """Give the W&B logger this run folder's run id, so a resumed run continues its W&B run, and
    its dashboard labels (group per sweep, tags, job type: `wandb_runs`)."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if not wandb_cfg or not str(wandb_cfg.get("_target_", "")).endswith("WandbLogger"):
        return
    label_training_run(wandb_cfg, cfg.get("name"))
    if wandb_cfg.get("id"):
        return
    with open_dict(cfg):
        wandb_cfg.id = wandb_run_id(output_dir, secrets.token_hex(4))  # W&B ids: [a-z0-9]
        wandb_cfg.resume = "allow"


def _plugins() -> list[Any]:
    """Atomic checkpoint files; on SLURM, requeueing is left to the launcher (submitit), not
    Lightning (see `preemption`)."""
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def train(cfg: DictConfig) -> dict[str, float]:
    output_dir = Path(cfg.paths.output_dir)
    lock = RunFolderLock(output_dir)
    if rank_zero_only.rank == 0:  # DDP ranks > 0 share the folder of their rank 0
        lock.acquire()
    try:
        return _train_in(cfg, output_dir)
    finally:
        lock.release()


def _train_in(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    resume = resolve_resume(cfg.get("ckpt_path"), output_dir)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.check_source()  # a missing dataset stops here, before a logger opens a run for it
    output_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        _keep_wandb_run(cfg, output_dir)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    model = instantiate(cfg.model, _convert_="all")
    model.validate_schedule()
    model.check_pretrained_files(resuming=resume is not None)  # a missing weights file stops here, before the loggers
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    if not loggers:  # logger=none: nothing to send learning rates to (Lightning would refuse to start)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=_plugins(), _convert_="all"
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(model.run_config)
    if resume is not None and trainer.is_global_zero:
        print(f"resuming from {resume.path} (after iteration {resume.iteration})")
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume.path if resume is not None else None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        for checkpoint in trainer.checkpoint_callbacks:  # LastCheckpoint is one too, without a "best"
            if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path:
                print(f"best checkpoint: {checkpoint.best_model_path}")
        print(f"run folder: {output_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    keep_freed_memory()  # glibc: reuse freed memory instead of faulting it back in every iteration
    handlers = launcher_handlers()  # before Lightning's: submitit's requeue handler, if any
    try:
        with user_errors_as_messages():
            metrics = train(cfg)
    except TrainingInterrupted as interrupted:
        print(f"{interrupted}; resume with the same command and hydra.run.dir={cfg.paths.output_dir}", file=sys.stderr)
        exit_after_interruption(interrupted, handlers)
    finally:
        _finish_wandb()
    monitored = cfg.get("optimized_metric")
    return metrics.get(monitored) if monitored else None


if __name__ == "__main__":
    main()
