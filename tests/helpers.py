"""Shared test helpers: tiny models built from the real configs, a CPU trainer, and a callback
that records every optimiser step (which optimiser, with which gradients)."""
from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader, Dataset

from bicyclegan_pl.config import register_resolvers

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
EXPERIMENTS = sorted(
    p.stem for p in (Path(CONF_DIR) / "experiment").glob("bicycle_*.yaml")
)
TINY_NETS = [
    "model.generator.ngf=8",
    "model.encoder.nef=8",
    "model.encoder.n_blocks=3",
    "model.discriminator.ndf=8",
    "model.discriminator.n_layers=2",  # 3 layers need >= 64 px for the second (half-size) scale
    "data.crop_size=32",
]
#: the discriminators step every third iteration (1, 4, 7): the resume at iteration 4 falls inside a period
LAZY_DISCRIMINATORS = (
    "model.schedule=[{name: generator_encoder, step: [E, G], backward: [{terms: [vae_gan, clr_gan, vae_l1, kl]},"
    " {terms: [clr_latent], into: [G]}]}, {name: discriminators, every: 3, offset: 1, step: [D_vae, D_clr],"
    " backward: [{terms: [d_vae, d_clr]}]}]"
)
#: a CycleGAN of narrow nets on the embedded unpaired data at 32 px (pass tiny=False with it)
SMALL_CYCLEGAN = (
    "model=cyclegan",
    "data=synthetic_unpaired",
    "data.crop_size=32",
    "model.generator.ngf=8",
    "model.generator.n_blocks=2",
    "model.discriminator.ndf=8",
    "model.discriminator.n_layers=2",
)


def compose_config(
    *overrides: str, tiny: bool = True, config_name: str = "train", output_dir: str = "/tmp/unused"
) -> DictConfig:
    """The config a user gets from `python -m bicyclegan_pl.train <overrides>` (hydra paths filled
    in; ``config_name``: another root config, e.g. clip_pretrain, with ``tiny=False``)."""
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[*overrides, *(TINY_NETS if tiny else [])], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = output_dir
        cfg.hydra.runtime.cwd = str(Path(CONF_DIR).parent)
    # resolve ${hydra:...} now, then drop the hydra node as a real run does
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def build_model(*overrides: str, tiny: bool = True):
    cfg = compose_config(*overrides, tiny=tiny)
    return instantiate(cfg.model, _convert_="all"), cfg


class FixedBatches(Dataset):
    """Items of a list of pre-made batches, in order (so the loader reproduces them exactly)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]):
        self.items = [{k: v[i] for k, v in b.items()} for b in batches for i in range(len(next(iter(b.values()))))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def random_batches(count: int, batch_size: int, size: int = 32, input_nc: int = 1, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "A": torch.rand(batch_size, input_nc, size, size, generator=generator) * 2 - 1,
            "B": torch.rand(batch_size, 3, size, size, generator=generator) * 2 - 1,
        }
        for _ in range(count)
    ]


def loader(batches: list[dict[str, torch.Tensor]]) -> DataLoader:
    return DataLoader(FixedBatches(batches), batch_size=len(batches[0]["A"]), shuffle=False)


def cpu_trainer(**kwargs) -> L.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        max_epochs=1,
        deterministic=True,
    )
    options.update(kwargs)
    return L.Trainer(**options)


def state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def clone(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module)


def resumed_and_uninterrupted(initial, fit, checkpoint: Path):
    """Two epochs from copies of ``initial``: in one go, and as one epoch saved to ``checkpoint``
    then resumed from it. ``fit(model, epochs, ckpt_path=None) -> trainer``. Asserts that both end
    with equal state dicts; returns ((uninterrupted model, its trainer), (resumed model, its trainer))
    for the caller's further checks (optimiser states, iteration counts)."""
    uninterrupted = copy.deepcopy(initial)
    full = fit(uninterrupted, 2)
    half = copy.deepcopy(initial)
    fit(half, 1).save_checkpoint(checkpoint)
    resumed = copy.deepcopy(initial)
    again = fit(resumed, 2, checkpoint)
    for (key, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{key} differs after resume"
    return (uninterrupted, full), (resumed, again)


class StepRecorder(L.Callback):
    """Records every optimiser step of a fit, in order: the optimiser's name (its param group's
    ``name``: ``G``, ``E``, ``D_vae``, ...) and a copy of the gradient of each of its parameters
    just before the step (zeros for a parameter without gradient)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, list[torch.Tensor]]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            optimizer.register_step_pre_hook(self._record)

    def _record(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        gradients = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in parameters]
        self.steps.append((optimizer.param_groups[0]["name"], gradients))

    @property
    def order(self) -> list[str]:
        """The names of the optimisers in the order they stepped."""
        return [name for name, _ in self.steps]

    def gradients(self, name: str) -> list[list[torch.Tensor]]:
        """The gradients of each step of optimiser ``name``, in order."""
        return [gradients for stepped, gradients in self.steps if stepped == name]


def same_gradients(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


class LearningRateRecorder(L.Callback):
    """The learning rate of every optimiser step of a fit, in order: (optimiser name, lr)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            optimizer.register_step_pre_hook(
                lambda o, args, kwargs: self.steps.append((o.param_groups[0]["name"], o.param_groups[0]["lr"]))
            )
