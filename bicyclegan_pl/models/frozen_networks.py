"""The frozen networks CLIP2GAN loads from files: its generator, the EMA generator of a GAN trained
here (a bicyclegan_pl checkpoint of ``+experiment=dcgan_synthetic`` / ``stylegan2_synthetic``) or a
StyleGAN2 checkpoint in rosinality/stylegan2-pytorch's format (``{"g_ema": ..., "latent_avg": ...}``);
and the face-identity network of its identity loss, a TorchScript file."""
from __future__ import annotations

from pathlib import Path

import torch

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.nets.latent_generators import LatentGenerator

FORMATS = ("auto", "bicyclegan_pl", "rosinality")


class GeneratorCheckpointError(UserError, ValueError):
    """The generator checkpoint is missing or holds no generator this loader knows."""


class IdentityNetworkError(UserError, ValueError):
    """The identity network file is missing or is not a TorchScript module."""


def load_frozen_generator(
    path: str | Path,
    format: str = "auto",
    size: int | None = None,
    style_dim: int = 512,
    n_mlp: int = 8,
    channel_multiplier: int = 2,
    max_channels: int | None = None,
) -> LatentGenerator:
    """The generator of ``path`` in eval mode with gradients off. ``format``: auto (by the file's
    keys), bicyclegan_pl, or rosinality (which needs ``size`` and the architecture it was trained with)."""
    if format not in FORMATS:
        raise GeneratorCheckpointError(f"model.generator.format={format!r}: use one of {', '.join(FORMATS)}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise GeneratorCheckpointError(
            f"Generator checkpoint {path} does not exist. Train one with `python -m bicyclegan_pl.train "
            "+experiment=dcgan_synthetic` (or stylegan2_synthetic) and pass its checkpoints/last.ckpt, or give a "
            "rosinality StyleGAN2 checkpoint with model.generator.format=rosinality model.generator.size=<pixels>."
        )
    if format == "auto":
        format = "rosinality" if _holds_g_ema(path) else "bicyclegan_pl"
    if format == "rosinality":
        from bicyclegan_pl.nets.stylegan2 import StyleGAN2

        if size is None:
            raise GeneratorCheckpointError(f"{path} is a rosinality StyleGAN2 checkpoint: give its resolution, model.generator.size=<pixels>")
        generator = StyleGAN2.from_rosinality(
            path, size, style_dim, n_mlp, channel_multiplier, max_channels=max_channels, source=str(path)
        )
    else:
        generator = _trained_here(path)
    return generator.requires_grad_(False).eval()


def _holds_g_ema(path: Path) -> bool:
    """Whether ``path`` is a rosinality checkpoint (a dict with ``g_ema``), read without running
    pickled code (rosinality's training checkpoints also hold an argparse.Namespace)."""
    import argparse

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False  # not a plain tensor file: our own checkpoints hold the run config
    return isinstance(checkpoint, dict) and "g_ema" in checkpoint


def _trained_here(path: Path) -> LatentGenerator:
    from bicyclegan_pl.models.checkpoint import model_from_checkpoint
    from bicyclegan_pl.models.gan import UnconditionalGAN

    model, _ = model_from_checkpoint(path)
    if not isinstance(model, UnconditionalGAN):
        raise GeneratorCheckpointError(
            f"{path} is a {type(model).__name__} checkpoint, not an unconditional GAN: train one with "
            "`python -m bicyclegan_pl.train +experiment=dcgan_synthetic` (or stylegan2_synthetic)."
        )
    return model.generator_ema


def load_identity_network(path: str | Path) -> torch.nn.Module:
    """An ArcFace-style face-embedding network from a file that needs no source code: a
    ``torch.export`` program (``.pt2``: ``torch.export.save(torch.export.export(net, (example,),
    dynamic_shapes=...), "arcface.pt2")``) or TorchScript (``torch.jit.save(torch.jit.trace(net,
    example), "arcface.pt")``). It takes images in [-1, 1] resized to ``model.identity_size`` and
    gives one embedding per image."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise IdentityNetworkError(
            f"Identity network {path} does not exist. Export a face-embedding network with torch.export or "
            "TorchScript (see the README, CLIP2GAN) or switch the identity loss off: model.loss_weights.id=0."
        )
    if path.suffix == ".pt2":
        try:
            return _LoadedNetwork(torch.export.load(str(path)).module())
        except Exception as error:
            raise IdentityNetworkError(f"{path} is not a torch.export program ({type(error).__name__}: {error}).") from error
    try:
        return _LoadedNetwork(torch.jit.load(str(path), map_location="cpu"))
    except Exception as error:
        raise IdentityNetworkError(
            f"{path} is not a TorchScript module ({type(error).__name__}: {error}); .pt2 files are read as torch.export programs."
        ) from error


class _LoadedNetwork(torch.nn.Module):
    """A TorchScript or torch.export module behind a plain one, so it can be frozen and moved like
    any network. Its mode is never switched: neither kind supports ``train``/``eval`` fully (an
    exported module refuses ``eval()``), and each was saved in the mode it is meant to run in."""

    def __init__(self, loaded: torch.nn.Module) -> None:
        super().__init__()
        self.loaded = loaded

    def train(self, mode: bool = True) -> "_LoadedNetwork":
        self.training = mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.loaded(images)
