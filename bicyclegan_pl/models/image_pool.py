"""The image buffer of CycleGAN's discriminators (junyanz ``util/image_pool.py``; Shrivastava et
al. 2017): D sees a mix of the newest fakes and fakes from earlier iterations.

The random choices are drawn by the caller (``draw``, from the iteration's generator) before the
iteration runs, so they are a pure function of (seed, rank, iteration) like every other draw.
"""
from __future__ import annotations

import torch
from torch import Tensor


class ImagePool:
    def __init__(self, pool_size: int = 50):
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        self.images: list[Tensor] = []

    def draw(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Per image: a uniform number (swap when > 0.5) and a pool slot."""
        if self.pool_size == 0:
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        return torch.rand(count, generator=generator), torch.randint(self.pool_size, (count,), generator=generator)

    def query(self, images: Tensor, draws: tuple[Tensor, Tensor]) -> Tensor:
        """While the pool fills, store and return each image; then with probability 1/2 return a
        stored image (replacing it with the new one), else the new image."""
        if self.pool_size == 0:
            return images
        uniforms, slots = draws
        returned = []
        for index, image in enumerate(images.detach()):
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                returned.append(image)
            elif float(uniforms[index]) > 0.5:
                slot = int(slots[index])
                returned.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                returned.append(image)
        return torch.cat(returned)

    def state(self) -> list[Tensor]:
        return [image.cpu() for image in self.images]

    def load_state(self, images: list[Tensor], device: torch.device) -> None:
        self.images = [image.to(device) for image in images][: self.pool_size]
