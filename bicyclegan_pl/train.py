"""Training entry point: ``python -m bicyclegan_pl.train [+experiment=NAME] [key=value ...]``.

Composes the Hydra config in conf/, instantiates data, model, callbacks, loggers and trainer,
and fits. Resume an interrupted run with ``hydra.run.dir=<its folder> ckpt_path=last``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from bicyclegan_pl import distributed  # noqa: F401  (registers the ddp_manual_sync strategy)
from bicyclegan_pl.callbacks.metrics import MetricsConfigurationError
from bicyclegan_pl.config import register_resolvers, user_errors_as_messages
from bicyclegan_pl.data.errors import DatasetError
from bicyclegan_pl.metrics.weights import WeightsNotFoundError
from bicyclegan_pl.schedule import NonFiniteLossError, ScheduleError

register_resolvers()

# mistakes a user fixes (data path, schedule, settings, missing weights): a message, not a traceback
USER_ERRORS = (DatasetError, ScheduleError, NonFiniteLossError, MetricsConfigurationError, WeightsNotFoundError)


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


def train(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    model.validate_schedule()
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    if not loggers:  # logger=none: nothing to send learning rates to (Lightning would refuse to start)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all")
    for logger in trainer.loggers:
        logger.log_hyperparams(model.run_config)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_path:
            print(f"best checkpoint: {checkpoint.best_model_path}")
        print(f"run folder: {output_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        with user_errors_as_messages(USER_ERRORS):
            metrics = train(cfg)
    finally:
        _finish_wandb()
    monitored = cfg.get("optimized_metric")
    return metrics.get(monitored) if monitored else None


if __name__ == "__main__":
    main()
