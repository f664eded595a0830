"""How recognisable generated synthetic objects are, read from the world's ground truth after each
validation: ``val/shape_match`` (IoU of each output's object with the best-fitting real object; real
images: 0.95 at 32 px) and ``val/palette_fit`` (share of object pixels in the palette; real: 1.0).
For systems trained on the synthetic objects (``data=synthetic_objects``): the first of each
system's ``sample_outputs``, the GANs' random samples and CLIP2GAN's noise-free reconstructions."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch

from bicyclegan_pl.metrics.object_judge import ObjectJudge


class ObjectRealismCallback(L.Callback):
    def __init__(self, image_size: int, max_images: int = 256, seed: int = 7) -> None:
        self.image_size, self.max_images, self.seed = int(image_size), int(max_images), int(seed)
        self._judge: ObjectJudge | None = None
        self._scores: dict[str, list[torch.Tensor]] = {}
        self._generator: torch.Generator | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._judge is None:
            self._judge = ObjectJudge(self.image_size)
        self._scores = {"shape_match": [], "palette_fit": []}
        self._generator = torch.Generator().manual_seed(self.seed)  # the same draws at every validation

    def on_validation_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        seen = sum(len(scores) for scores in self._scores["shape_match"])
        if trainer.sanity_checking or seen >= self.max_images:
            return
        images = pl_module.sample_outputs(batch, 1, self._generator)[0][: self.max_images - seen].cpu()
        self._scores["shape_match"].append(self._judge.shape_match(images))
        self._scores["palette_fit"].append(self._judge.palette_fit(images))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._scores["shape_match"]:
            return
        for name, scores in self._scores.items():
            pl_module.log(f"val/{name}", torch.cat(scores).mean().to(pl_module.device), sync_dist=True)
