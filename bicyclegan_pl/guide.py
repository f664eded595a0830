"""CLIP guidance entry point (seed 000): ``python -m bicyclegan_pl.guide ckpt=<bicyclegan ckpt>
input=<image or folder> prompt="a red leather shoe" method=rank|optimize|rank_then_optimize``.

For every input image it searches the latent code of the checkpoint's generator for outputs
that match the prompts (conf/guide.yaml) and writes ``<stem>.png`` and ``<stem>.json`` to
``out_dir``. The network weights are untouched: the guidance is post hoc.

``val_inputs=N`` takes the first N inputs of the checkpoint's validation split instead of files;
on the synthetic data, whose ground truth is known, it also measures text control
(``metrics.text_control``): how often the outputs show the colour a prompt names, next to random z
and chance, in ``text_control.json`` and ``text_control.md``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor
from tqdm.auto import tqdm

from bicyclegan_pl.clip import ClipScorer, PromptError, load_clip
from bicyclegan_pl.config import register_resolvers, resolve_device, user_errors_as_messages
from bicyclegan_pl.data.errors import BadImageError
from bicyclegan_pl.data.images import IMAGE_EXTENSIONS, image_files, open_rgb
from bicyclegan_pl.data.synthetic import item_generator
from bicyclegan_pl.data.transforms import paired_transform, to_image
from bicyclegan_pl.errors import UserError
from bicyclegan_pl.guidance import GuidanceResult, optimize, rank, rank_then_optimize
from bicyclegan_pl.metrics.text_control import TextControl, random_outputs, text_control_table
from bicyclegan_pl.models.checkpoint import CheckpointError, model_from_checkpoint
from bicyclegan_pl.rendering import render_guidance_grid
from bicyclegan_pl.runtime.allocator import keep_freed_memory

register_resolvers()

METHODS = ("rank", "optimize", "rank_then_optimize")


class GuideInputError(UserError, ValueError):
    """An input image or setting of the guide command that cannot be used."""


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(item) for item in value]
    return [str(value)]


def find_inputs(path: str | Path) -> list[Path]:
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise GuideInputError(f"input={path}: no such file or folder.")
    files = image_files(path, recursive=False)
    if not files:
        raise GuideInputError(f"input={path}: the folder holds no image ({', '.join(IMAGE_EXTENSIONS)}).")
    return files


def load_input(path: Path, half: str | None, channels: int, load_size: int, crop_size: int) -> Tensor:
    """An input image as the generator saw its training inputs: (1, channels, crop, crop) in [-1, 1]."""
    try:
        picture = open_rgb(path)  # 16-bit and transparent files as the training data decodes them
    except BadImageError as error:
        raise GuideInputError(f"input {path} cannot be read as an image ({error.__cause__ or error}).") from error
    if half is not None:
        if half not in ("left", "right"):
            raise GuideInputError(f"input_half={half}: use left, right or null.")
        width, height = picture.size
        middle = width // 2
        picture = picture.crop((0, 0, middle, height) if half == "left" else (middle, 0, width, height))
    transform = paired_transform(load_size, crop_size, train=False)
    return transform(to_image(picture, channels)).unsqueeze(0)


@dataclass
class GuideInput:
    name: str  # file stem of its outputs
    source: str  # where it came from (a file, or the checkpoint's validation item)
    image: Tensor  # (1, C, H, W) in [-1, 1], as the generator saw its training inputs
    mask: Tensor | None = None  # (1, H, W) the true object (synthetic data), for text control


def guide_inputs(cfg: DictConfig, data: dict[str, Any]) -> tuple[list[GuideInput], Tensor | None]:
    """The inputs (files, or the first ``val_inputs`` of the checkpoint's validation split) and the
    palette of the data's appearances when the inputs come with ground truth (else None)."""
    if cfg.val_inputs is None:
        if cfg.input is None:
            raise GuideInputError("no input: give input=<image or folder>, or val_inputs=N for the checkpoint's validation split.")
        crop_size = int(data["crop_size"])
        load_size = int(data.get("load_size") or crop_size)
        files = find_inputs(cfg.input)
        loaded = [load_input(path, cfg.input_half, int(data["input_nc"]), load_size, crop_size) for path in files]
        return [GuideInput(path.stem, str(path), image) for path, image in zip(files, loaded)], None
    if cfg.input is not None:
        raise GuideInputError(f"input={cfg.input} and val_inputs={cfg.val_inputs}: give one of them.")
    if int(cfg.val_inputs) < 1:
        raise GuideInputError(f"val_inputs={cfg.val_inputs}: must be at least 1.")
    datamodule = instantiate(data, _convert_="all")
    datamodule.setup("validate")
    dataset = datamodule.val_set
    count = min(int(cfg.val_inputs), len(dataset))
    inputs = []
    for index in range(count):
        item = dataset[index]
        inputs.append(GuideInput(f"val_{index:04d}", f"validation item {index}", item["A"].unsqueeze(0), item.get("mask")))
    return inputs, datamodule.palette if all(item.mask is not None for item in inputs) else None


def input_generator(seed: int, name: str, stream: str = "search") -> torch.Generator:
    """The random codes of one input: a function of (seed, the input's name, stream), so each input
    draws its own codes (independent trials for text control) whatever its place in the folder."""
    return item_generator(seed, f"guide/{stream}/{name}", 0)


def run_method(cfg: DictConfig, generate, scorer, nz: int, device: torch.device, progress, name: str) -> GuidanceResult:
    generator = input_generator(int(cfg.seed), name)
    options = cfg.optimize
    optimize_options = dict(
        steps=options.steps, lr=options.lr, prior_weight=options.prior_weight,
        early_stop_patience=options.early_stop_patience, early_stop_min_delta=options.early_stop_min_delta,
        top_k=cfg.top_k, progress=progress,
    )
    if cfg.method == "rank":
        return rank(generate, scorer, nz, cfg.rank.num_samples, cfg.rank.chunk_size, cfg.top_k, generator, device, progress)
    if cfg.method == "optimize":
        starts = torch.randn(options.num_starts, nz, generator=generator).to(device)
        return optimize(generate, scorer, starts, **optimize_options)
    return rank_then_optimize(
        generate, scorer, nz, cfg.rank.num_samples, cfg.rank.chunk_size, options.num_starts, generator, device,
        **optimize_options,
    )


def _work_per_input(cfg: DictConfig, num_prompts: int) -> int:
    """Progress units per input: latent codes generated and scored."""
    units = cfg.rank.num_samples if cfg.method != "optimize" else 0
    if cfg.method != "rank":
        units += num_prompts * cfg.optimize.steps * cfg.optimize.num_starts
    return units


def _row(name: str, kind: str, result: GuidanceResult, index: int) -> dict[str, Any]:
    row = {
        "prompt": name,
        "kind": kind,
        "scores": result.scores[index].tolist(),
        "z": result.z[index].detach().cpu().tolist(),
    }
    if result.trajectories is not None:
        row["steps_run"] = result.steps_run[index]
        row["best_score_per_step"] = result.trajectories[index].max(dim=1).values.tolist()
        row["trajectories"] = result.trajectories[index].T.tolist()  # one list per start
    return row


def _check(cfg: DictConfig) -> None:
    if cfg.method not in METHODS:
        raise GuideInputError(f"method={cfg.method}: use one of {', '.join(METHODS)}.")
    for key, value in (("top_k", cfg.top_k), ("rank.num_samples", cfg.rank.num_samples),
                       ("rank.chunk_size", cfg.rank.chunk_size), ("optimize.num_starts", cfg.optimize.num_starts),
                       ("optimize.steps", cfg.optimize.steps)):
        if int(value) < 1:
            raise GuideInputError(f"{key}={value}: must be at least 1.")


def guide(cfg: DictConfig) -> list[dict[str, Any]]:
    _check(cfg)
    prompts, image_prompts = as_list(cfg.prompt), as_list(cfg.image_prompt)
    if not prompts and not image_prompts:
        raise PromptError('no prompt: give prompt="a red leather shoe" (or a list) and/or image_prompt=<image file>.')
    device = resolve_device(cfg.device)
    model, checkpoint = model_from_checkpoint(cfg.ckpt)
    if model.latent_size is None:
        raise CheckpointError(f"{cfg.ckpt} holds a {type(model).__name__}; guidance needs a model with a latent code (BicycleGAN).")
    model.to(device).eval().requires_grad_(False)
    inputs, palette = guide_inputs(cfg, checkpoint["run_config"]["data"])

    clip = load_clip(cfg.clip.model, device, cfg.clip.local_files_only)
    scorer = ClipScorer(clip, prompts, image_prompts, as_list(cfg.templates), cfg.negative_prompt, cfg.negative_weight)
    kinds = ["text"] * len(prompts) + ["image"] * len(image_prompts)
    # with ground truth (val_inputs on synthetic data): how often the outputs show the named colour
    text_control = TextControl(prompts, palette) if palette is not None else None

    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = OmegaConf.to_container(cfg, resolve=True)
    summaries = []
    bar = tqdm(total=len(inputs) * _work_per_input(cfg, len(scorer.names)), desc="guiding", unit="z")
    for item in inputs:
        started = time.perf_counter()
        source = item.image.to(device)

        def generate(z: Tensor, source: Tensor = source) -> Tensor:
            return model.generate(source.expand(len(z), -1, -1, -1), z)

        result = run_method(cfg, generate, scorer, model.latent_size, device, bar.update, item.name)
        grid = render_guidance_grid(source[0].cpu(), scorer.names, result.images.cpu(), result.scores)
        grid.save(out_dir / f"{item.name}.png")
        summary = {
            "input": item.source,
            "checkpoint": str(cfg.ckpt),
            "iteration": int(checkpoint.get("iteration", 0)),
            "method": cfg.method,
            "clip_model": cfg.clip.model,
            "rows": [_row(name, kind, result, index) for index, (name, kind) in enumerate(zip(scorer.names, kinds))],
            "seconds": round(time.perf_counter() - started, 3),
            "settings": settings,
        }
        (out_dir / f"{item.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
        summaries.append(summary)
        if text_control is not None and text_control.measurable and item.mask is not None:
            baseline = random_outputs(
                generate, model.latent_size, int(cfg.text_control.random_samples),
                input_generator(int(cfg.seed), item.name, "baseline"), device,
            )
            text_control.add(result.images[: len(prompts)].cpu(), baseline.cpu(), item.mask)
    bar.close()
    print(f"wrote {len(inputs)} grid(s) and JSON file(s) to {out_dir}")
    if text_control is not None and text_control.measurable:
        write_text_control(text_control, cfg, out_dir, settings)
    return summaries


def write_text_control(text_control: TextControl, cfg: DictConfig, out_dir: Path, settings: dict) -> None:
    """text_control.json and .md: per colour prompt, how often the outputs show that colour."""
    rows = text_control.summary()
    report = {"checkpoint": str(cfg.ckpt), "method": cfg.method, "clip_model": cfg.clip.model,
              "random_samples": int(cfg.text_control.random_samples), "prompts": rows, "settings": settings}
    (out_dir / "text_control.json").write_text(json.dumps(report, indent=2) + "\n")
    header = (
        "# Text control, judged by the ground truth\n\nFraction of outputs that show the colour the prompt names "
        "(mean colour inside the true object mask, on a white background), averaged over the inputs.\n\n"
    )
    table = text_control_table(rows, cfg.method)
    (out_dir / "text_control.md").write_text(header + table)
    print(table)


@hydra.main(version_base="1.3", config_path="../conf", config_name="guide")
def main(cfg: DictConfig) -> None:
    keep_freed_memory()  # glibc: reuse freed memory instead of faulting it back in
    with user_errors_as_messages():
        guide(cfg)


if __name__ == "__main__":
    main()
