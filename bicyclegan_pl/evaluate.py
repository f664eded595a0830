"""Evaluation entry point: ``python -m bicyclegan_pl.evaluate ckpt=<path> [data=<name>] [key=value ...]``.

Rebuilds the model of a training checkpoint, runs the metrics of conf/metrics/ over the chosen
split and writes metrics.json, metrics.md (a table) and samples.png to ``out_dir``.

A system evaluated in one direction (BicycleGAN, TraVeLGAN) has its metric keys bare (``fid``) and
metrics.json states ``num_inputs`` and ``protocol`` at the top level; a system evaluated in several
(CycleGAN: ``AtoB``, ``BtoA``) has them prefixed (``AtoB/fid``) and metrics.json states each
direction's ``num_inputs``, ``compared_with`` (the real images' batch key) and ``protocol`` under
``directions``. metrics.md's header says each direction's input and sample counts.

``clip.model=<hub id or folder>`` also measures semantic preservation (``clip_space_cosine``,
``clip_travel_cosine``: ``metrics.semantic``) in that CLIP's image space, for any system, so
CycleGAN, TraVeLGAN and CLIPTraVeLGAN checkpoints are compared in one space.
"""
from __future__ import annotations

import json
import time
import warnings
from collections.abc import Collection, Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bicyclegan_pl.clip import ClipModel, load_clip
from bicyclegan_pl.config import register_resolvers, resolve_device, user_errors_as_messages
from bicyclegan_pl.data.batches import first_inputs
from bicyclegan_pl.data.errors import DatasetError
from bicyclegan_pl.errors import UserError
from bicyclegan_pl.metrics.run import evaluate_model, metrics_table
from bicyclegan_pl.metrics.semantic import evaluate_semantic_preservation
from bicyclegan_pl.metrics.suite import EvaluationSuite
from bicyclegan_pl.models.checkpoint import model_from_checkpoint
from bicyclegan_pl.rendering import render_grid
from bicyclegan_pl.runtime.allocator import keep_freed_memory
from bicyclegan_pl.wandb_runs import log_evaluation

register_resolvers()


class DataMismatchError(UserError, ValueError):
    """The evaluation data would feed the networks differently from the checkpoint's training data."""

#: data settings that change what the networks see (image size, which half is the input, channels);
#: ``data=<name>`` brings its own defaults for them, which must not silently replace the training values
INPUT_KEYS = ("direction", "load_size", "crop_size", "input_nc", "output_nc")
#: the channel counts the networks were built with: no override makes other counts work
CHANNEL_KEYS = ("input_nc", "output_nc")


def _versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "torchvision", "torchmetrics", "torch-fidelity", "lightning"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def _data_config(cfg: DictConfig, run_config: dict[str, Any]) -> dict[str, Any]:
    """``data=<name>`` replaces the checkpoint's data; without it, ``+data.<key>=...`` edits it."""
    chosen = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else {}
    data = chosen if "_target_" in chosen else {**run_config["data"], **chosen}
    if cfg.split != "val":
        if "val_split" not in data:
            raise DatasetError(
                f"split={cfg.split}: {data.get('_target_')} has only a validation split; use split=val."
            )
        data["val_split"] = cfg.split
    return data


def overridden_data_keys(overrides: Iterable[str]) -> set[str]:
    """The ``data.<key>`` set on the command line (``data.k=v``, ``+data.k=v``, ``++data.k=v``)."""
    parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
    return {o.key_or_group.split(".")[1] for o in parsed if o.key_or_group.startswith("data.")}


def check_data_matches_training(
    data: Mapping[str, Any], trained: Mapping[str, Any], overridden: Collection[str]
) -> list[str]:
    """Compare the evaluation data with the checkpoint's training data on :data:`INPUT_KEYS`.

    A difference the user did not ask for (a ``data=<name>`` default) raises DataMismatchError
    naming every such key; one set on the command line is returned as a warning, except the channel
    counts, which the networks cannot change. Keys only one of the two configs has are not compared.
    """
    differing = [k for k in INPUT_KEYS if k in data and k in trained and data[k] != trained[k]]
    channels = [k for k in differing if k in CHANNEL_KEYS]
    if channels:
        raise DataMismatchError(
            "the checkpoint's networks were built for "
            + ", ".join(f"{k}={trained[k]}" for k in channels)
            + " but the evaluation data has "
            + ", ".join(f"{k}={data[k]}" for k in channels)
            + "; pass "
            + " ".join(f"data.{k}={trained[k]}" for k in channels)
        )
    silent = [k for k in differing if k not in overridden]
    if silent:
        raise DataMismatchError(
            "the evaluation data differs from the checkpoint's training data in "
            + ", ".join(f"{k} ({data[k]!r} here, {trained[k]!r} in training)" for k in silent)
            + ". Pass "
            + " ".join(f"data.{k}={trained[k]}" for k in silent)
            + " to evaluate as trained, or set the key on the command line (e.g. "
            + " ".join(f"data.{k}={data[k]}" for k in silent)
            + ") to accept the difference"
        )
    return [
        f"data.{k}={data[k]!r} differs from the checkpoint's training data ({trained[k]!r}); "
        "evaluating with it, as set on the command line"
        for k in differing
    ]


def _samples_line(suite: EvaluationSuite, deterministic: bool) -> str:
    """How many outputs per input the metrics saw, for metrics.md's header."""
    if deterministic:
        return "one output per input (deterministic)"
    return (
        f"random z per input: {suite.fid_samples_per_input} for FID/KID/IS, "
        f"{suite.samples_per_input} for LPIPS diversity and ground-truth metrics"
    )


def clip_embedding_pair(model, clip: ClipModel, generator: torch.Generator):
    """``real_A -> (C(x), C(G(x)))`` in a CLIP's image space C, G(x) one output of the system
    (one random z for a multimodal one, drawn from ``generator``)."""

    @torch.no_grad()
    def embed_pair(real_A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        real_A = real_A.to(model.device)
        output = model.sample_outputs({"A": real_A}, 1, generator)[0]
        return clip.encode_images(real_A), clip.encode_images(output)

    return embed_pair


def evaluate(cfg: DictConfig, explicit_data_keys: Collection[str] = ()) -> dict[str, float]:
    """``explicit_data_keys``: the data keys set on the command line (see :func:`check_data_matches_training`)."""
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    model, checkpoint = model_from_checkpoint(cfg.ckpt)
    model.to(device)
    data_config = _data_config(cfg, checkpoint["run_config"])
    for message in check_data_matches_training(data_config, checkpoint["run_config"]["data"], explicit_data_keys):
        warnings.warn(message, stacklevel=1)
    datamodule = instantiate(data_config, _convert_="all")
    datamodule.setup("validate")
    loader = datamodule.val_dataloader()
    num_items = len(loader.dataset) if cfg.max_inputs is None else min(cfg.max_inputs, len(loader.dataset))

    # one pass per translation direction; a two-way system (CycleGAN) is judged both ways, each
    # direction's outputs against the real images of its target domain (fake B vs real B)
    directions = model.evaluation_directions()
    results: dict[str, float] = {}
    passes: dict[str, dict[str, Any]] = {}  # direction -> what it saw and how it was measured
    skipped: dict[str, str] = {}
    metrics_config = cfg.metrics
    if model.deterministic:  # one output per input: no diversity to measure
        metrics_config = OmegaConf.merge(metrics_config, {"lpips": None})
    started = time.perf_counter()
    for direction, (outputs, real_key) in directions.items():
        suite = instantiate(metrics_config, _convert_="all").to(device)
        suite.prepare(
            palette=datamodule.palette, data_config=data_config, split=cfg.split, num_items=num_items, real_key=real_key,
            encoded=model.has_encoder, source_palette=datamodule.source_palette,
        )
        generator = torch.Generator().manual_seed(cfg.seed)
        values, seen = evaluate_model(
            model, loader, suite, generator, cfg.max_inputs, total=len(loader), outputs=outputs,
            description=f"evaluating {direction}" if direction else "evaluating",
        )
        results.update({f"{direction}/{key}" if direction else key: value for key, value in values.items()})
        passes[direction] = {
            "num_inputs": seen, "compared_with": real_key, "protocol": suite.describe(),
            "samples": _samples_line(suite, model.deterministic or outputs is not None),
        }
        skipped.update({f"{direction}: {name}" if direction else name: reason for name, reason in suite.skipped.items()})
    if model.has_semantic_space:  # a translator with a Siamese space (TraVeLGAN, CLIPTraVeLGAN)
        results.update(evaluate_semantic_preservation(model.semantic_embeddings, loader, cfg.max_inputs, total=len(loader)))
    if cfg.clip.model:  # every system in one chosen CLIP space, so systems are compared in the same space
        clip = load_clip(str(cfg.clip.model), device, cfg.clip.local_files_only)
        in_clip = evaluate_semantic_preservation(
            clip_embedding_pair(model, clip, torch.Generator().manual_seed(cfg.seed)), loader, cfg.max_inputs,
            total=len(loader),
        )
        results.update({f"clip_{key}": value for key, value in in_clip.items()})
    elapsed = time.perf_counter() - started

    summary: dict[str, Any] = {
        "metrics": results,
        "checkpoint": str(Path(cfg.ckpt).expanduser().absolute()),
        "epoch": checkpoint.get("epoch"),
        "iteration": int(checkpoint.get("iteration", 0)),
        "split": cfg.split,
        "data": data_config,
    }
    if list(passes) == [""]:  # one unnamed direction: its counts and protocol are the evaluation's
        summary.update(num_inputs=passes[""]["num_inputs"], protocol=passes[""]["protocol"])
    else:
        summary["directions"] = {
            name: {key: value for key, value in found.items() if key != "samples"} for name, found in passes.items()
        }
    if cfg.clip.model:
        summary["clip_model"] = str(cfg.clip.model)
    summary.update(seed=cfg.seed, seconds=round(elapsed, 1), versions=_versions())
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    counts = [
        f"{name + ': ' if name else ''}{found['num_inputs']} inputs, compared with real {found['compared_with']}; "
        f"{found['samples']}.\n"
        for name, found in passes.items()
    ]
    header = (
        f"# Evaluation of {Path(cfg.ckpt).name} (iteration {summary['iteration']}) on the {cfg.split} split\n\n"
        f"Data `{data_config.get('_target_')}`.\n\n" + "\n".join(counts) + "\n"
    )
    skipped_lines = "".join(f"\nSkipped {name}: {reason}\n" for name, reason in skipped.items())
    table = metrics_table(results)
    (out_dir / "metrics.md").write_text(header + table + skipped_lines)

    first = first_inputs(loader, 8)
    grid = render_grid(model.sample_columns(first, 5, torch.Generator().manual_seed(cfg.seed)))
    grid.save(out_dir / "samples.png")

    print(table + skipped_lines)
    print(f"wrote {out_dir / 'metrics.json'}, metrics.md and samples.png ({elapsed:.0f} s)")
    # into the checkpoint's W&B run when it has one, as eval/<split>/... (bicyclegan_pl/wandb_runs.py)
    log_evaluation(cfg.ckpt, checkpoint, out_dir, results, {"samples": out_dir / "samples.png"})
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    keep_freed_memory()  # glibc: reuse freed memory instead of faulting it back in
    with user_errors_as_messages():
        evaluate(cfg, overridden_data_keys(HydraConfig.get().overrides.task))


if __name__ == "__main__":
    main()
