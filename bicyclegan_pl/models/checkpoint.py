"""Rebuilding a trained model from a training checkpoint (its saved run config + weights)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.models.base import ScheduledTranslationModule


class CheckpointError(UserError, ValueError):
    """The checkpoint file is missing or is not a bicyclegan_pl training checkpoint."""


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        hint = " (a run folder keeps them in checkpoints/: last.ckpt, best-epochNNN.ckpt)"
        raise CheckpointError(f"Checkpoint {path} does not exist{hint}.")
    try:
        # our own files: they hold the run config (plain containers) next to the tensors
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(f"Checkpoint {path} could not be read ({type(error).__name__}: {error}).") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "run_config" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a bicyclegan_pl training checkpoint (it has no state_dict and run_config); "
            "use a .ckpt written by `python -m bicyclegan_pl.train`."
        )
    return checkpoint


def model_from_checkpoint(
    path: str | Path, expected: type[ScheduledTranslationModule] | None = None, purpose: str = ""
) -> tuple[ScheduledTranslationModule, dict[str, Any]]:
    """The LightningModule of a checkpoint, weights loaded, in eval mode on the CPU; and the checkpoint.
    ``expected``: refuse a checkpoint of another system (``purpose`` says what it was wanted for)."""
    checkpoint = load_checkpoint_file(path)
    target = str(checkpoint["run_config"].get("model", {}).get("_target_", ""))
    if expected is not None and target.rsplit(".", 1)[-1] != expected.__name__:
        raise CheckpointError(
            f"{path} is a checkpoint of {target.rsplit('.', 1)[-1] or 'an unknown system'}, but {purpose or 'this'} "
            f"needs a {expected.__name__} checkpoint."
        )
    # no LR scheduler: evaluation steps no optimiser (and a checkpoint written before
    # model.lr_scheduler became a _target_ still loads)
    model = instantiate(checkpoint["run_config"]["model"], lr_scheduler=None, _convert_="all")
    model.load_state_dict(checkpoint["state_dict"])
    model.run_config = checkpoint["run_config"]
    model.iteration = int(checkpoint.get("iteration", 0))
    return model.eval(), checkpoint
