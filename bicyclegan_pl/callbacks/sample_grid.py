"""PNG sample grids during training: rows are inputs, columns are what the system shows.

Each system provides ``sample_columns(batch, num_samples, generator)`` returning titled
image columns (BicycleGAN: input, ground truth, encoded reconstruction, random-z samples).
The inputs and random codes are fixed for the whole run, so grids of successive epochs
are directly comparable.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.utils import make_grid

HEADER_HEIGHT = 16


def to_display(images: Tensor, min_size: int = 96) -> Tensor:
    """[-1, 1] images (any channel count) -> RGB in [0, 1], enlarged so small images stay legible."""
    images = images.detach().float().cpu()
    images = images[:, :1].expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]
    images = ((images + 1) / 2).clamp(0, 1)
    scale = max(1, -(-min_size // images.shape[-1]))
    return torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest") if scale > 1 else images


def render_grid(columns: list[tuple[str, Tensor]], padding: int = 2) -> Image.Image:
    """One row per input, one titled column per entry of ``columns``."""
    titles = [title for title, _ in columns]
    images = [to_display(tensor) for _, tensor in columns]
    rows, size = images[0].shape[0], images[0].shape[-1]
    ordered = torch.stack(images, dim=1).reshape(rows * len(images), 3, size, images[0].shape[-2])
    grid = make_grid(ordered, nrow=len(images), padding=padding, pad_value=1.0)
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    body = Image.fromarray(array)
    canvas = Image.new("RGB", (body.width, body.height + HEADER_HEIGHT), "white")
    canvas.paste(body, (0, HEADER_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    for index, title in enumerate(titles):
        draw.text((padding + index * (size + padding) + 2, 2), title, fill="black")
    return canvas


class SampleGridCallback(L.Callback):
    """Writes ``<dirpath>/epoch_XXX.png`` (and ``latest.png``) after validation, and logs it to W&B."""

    def __init__(self, dirpath: str, every_n_epochs: int = 1, num_inputs: int = 8, num_samples: int = 5, seed: int = 1234):
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.num_inputs = num_inputs
        self.num_samples = num_samples
        self.seed = seed
        self._batch: dict[str, Tensor] | None = None

    def _fixed_batch(self, trainer: L.Trainer) -> dict[str, Tensor]:
        if self._batch is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
            parts: dict[str, list[Tensor]] = {}
            count = 0
            for batch in loader:
                for key, value in batch.items():
                    if isinstance(value, Tensor):
                        parts.setdefault(key, []).append(value)
                count += next(iter(parts.values()))[-1].shape[0]
                if count >= self.num_inputs:
                    break
            self._batch = {key: torch.cat(values)[: self.num_inputs] for key, values in parts.items()}
        return self._batch

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        generator = torch.Generator().manual_seed(self.seed)
        columns = pl_module.sample_columns(self._fixed_batch(trainer), self.num_samples, generator)
        image = render_grid(columns)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"epoch_{trainer.current_epoch:03d}.png"
        image.save(path)
        image.save(self.dirpath / "latest.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[image], caption=[" | ".join(t for t, _ in columns)])
