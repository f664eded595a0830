"""Seed 004's comparison, measured: ``python -m bicyclegan_pl.compare cyclegan.ckpt=<ckpt> ghiasi.ckpt=<ckpt>``
(conf/compare.yaml) runs CycleGAN and its two style-transfer baselines, Gatys et al. and Ghiasi et al.,
on the same held-out content images of a task and writes one table and one grid.

The task is a data config's validation split: the CycleGAN checkpoint's own data by default, or
``data=<name>`` (+ ``data.<key>=...``). Content images are one domain's validation images (A, or B
with ``direction=BtoA``), the target domain is the other side's. The two baselines need one style
image per content image: content i gets target image (i + style_offset) mod N, skipping the content's
own file (colorization's validation pairs a grayscale photo with its own colours, which no method
may see).

Per method, and for the content images left as they are (the "do nothing" row that seed 004's
failure cases amount to): FID and KID to the target images (the configured feature extractor; with
tens of images FID is biased upward, KID is not), content preservation (LPIPS and luma SSIM to the
input), style distance (relative Gram distance to the target domain, ``metrics.style``) and seconds
per image. Writes compare.md, compare.json, metrics.json (flat, for ``report --eval``), outputs.pt
(method -> (N, 3, H, W) outputs in [-1, 1], the content as ``input``) and compare.png (content | style | one column per method) to ``out_dir``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from tqdm.auto import tqdm

from bicyclegan_pl.config import register_resolvers, resolve_device, user_errors_as_messages
from bicyclegan_pl.data.batches import first_inputs
from bicyclegan_pl.errors import UserError
from bicyclegan_pl.metrics.distribution import feature_distances, pool_features
from bicyclegan_pl.metrics.diversity import load_lpips_network
from bicyclegan_pl.metrics.style import GramStyleDistance, lpips_distance, luma_ssim, to_rgb
from bicyclegan_pl.models.checkpoint import load_checkpoint_file, model_from_checkpoint
from bicyclegan_pl.models.cyclegan import CycleGAN
from bicyclegan_pl.rendering import render_grid
from bicyclegan_pl.style_transfer.result import Stylized, StylizeFunction
from bicyclegan_pl.stylize import METHODS as STYLIZE_METHODS
from bicyclegan_pl.stylize import noise_seed

register_resolvers()

METHODS = ("gatys", "ghiasi", "cyclegan")  # the grid's columns, in this order by default


class CompareSettingError(UserError, ValueError):
    """A setting of the compare command that cannot be used."""


def task_images(cfg: DictConfig, cyclegan_config: dict[str, Any] | None) -> dict[str, Any]:
    """Content, target and style images of the task's validation split (see the module docstring)."""
    chosen = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else {}
    if "_target_" in chosen:
        data = chosen
    elif cyclegan_config is not None:
        data = {**cyclegan_config["data"], **chosen}
    else:
        raise CompareSettingError("No task data: give cyclegan.ckpt=<CycleGAN checkpoint> (its data is the task) or data=<name>.")
    if cfg.direction not in ("AtoB", "BtoA"):
        raise CompareSettingError(f"direction={cfg.direction}: use AtoB (content = A) or BtoA (content = B).")
    source, target = ("A", "B") if cfg.direction == "AtoB" else ("B", "A")
    datamodule = instantiate(data, _convert_="all")
    datamodule.setup("validate")
    batch = first_inputs(datamodule.val_dataloader(), 10**9)
    content, content_paths = _unique(batch[source], batch[f"{source}_path"])
    targets, target_paths = _unique(batch[target], batch[f"{target}_path"])
    content, content_paths = content[: int(cfg.max_images)], content_paths[: int(cfg.max_images)]
    style_index = [_style_for(path, index + int(cfg.style_offset), target_paths) for index, path in enumerate(content_paths)]
    # a task whose every content has its own answer among the targets (colorization: the same photo
    # in colour) is also judged against that answer
    truth = None
    if all(path in target_paths for path in content_paths):
        truth = targets[[target_paths.index(path) for path in content_paths]]
    return {
        "data": data, "content": content, "content_paths": content_paths, "targets": targets,
        "target_paths": target_paths, "style": targets[style_index], "style_paths": [target_paths[i] for i in style_index],
        "truth": truth,
    }


def _unique(images: Tensor, paths: list[str]) -> tuple[Tensor, list[str]]:
    """Each file once, in loader order (an unpaired validation set repeats the smaller domain)."""
    first: dict[str, int] = {}
    for index, path in enumerate(paths):
        first.setdefault(path, index)
    keep = list(first.values())
    return images[keep], list(first)


def _style_for(content_path: str, start: int, target_paths: list[str]) -> int:
    """The first target image from ``start`` on (cyclically) that is not the content's own file."""
    for step in range(len(target_paths)):
        index = (start + step) % len(target_paths)
        if target_paths[index] != content_path:
            return index
    raise CompareSettingError(f"The target domain has no image other than {content_path} to use as a style reference.")


def check_methods(cfg: DictConfig) -> None:
    """Known methods, each with what it needs, before any data or network is loaded."""
    unknown = [name for name in cfg.methods if name not in METHODS]
    if unknown or not cfg.methods:
        raise CompareSettingError(f"methods: unknown {unknown or 'empty list'}; choose from {list(METHODS)}.")
    for name in cfg.methods:
        if name != "gatys" and not cfg[name].ckpt:
            kind = "CycleGAN" if name == "cyclegan" else "arbitrary_style"
            raise CompareSettingError(f"methods has {name} but no checkpoint: pass {name}.ckpt=<{kind} .ckpt> (or drop it from methods).")


def method_runners(cfg: DictConfig, device: torch.device) -> dict[str, StylizeFunction]:
    """name -> the method ready to run, for the methods asked for, in ``cfg.methods`` order. The
    baselines are the ``stylize`` command's (its :data:`~bicyclegan_pl.stylize.METHODS` builders, fed
    this config's ``gatys`` / ``ghiasi`` block). :func:`check_methods` has passed."""
    runners: dict[str, StylizeFunction] = {}
    for name in cfg.methods:
        settings = cfg[name]
        if name == "cyclegan":
            runners[name] = cyclegan_method(settings.ckpt, str(cfg.direction), device)
        else:
            block = {**OmegaConf.to_container(settings, resolve=True), "paths": OmegaConf.to_container(cfg.paths, resolve=True)}
            runners[name] = STYLIZE_METHODS[name](OmegaConf.create(block), device)
    return runners


def cyclegan_method(ckpt: str, direction: str, device: torch.device) -> StylizeFunction:
    """CycleGAN's generator of ``direction`` as a style-transfer method that ignores the style image
    (it has learnt its target domain)."""
    model, _ = model_from_checkpoint(ckpt, expected=CycleGAN, purpose="compare's cyclegan")
    model.to(device)
    translate, _ = model.evaluation_directions()[direction]
    source = "A" if direction == "AtoB" else "B"

    @torch.no_grad()
    def run(content: Tensor, style: Tensor, seeds: Sequence[int]) -> Stylized:  # noqa: ARG001
        started = time.perf_counter()
        images = translate({source: content.to(device)})
        return Stylized(images=images.detach(), seconds=time.perf_counter() - started, details=[{} for _ in content])

    return run


def compare(cfg: DictConfig) -> dict[str, dict[str, float]]:
    check_methods(cfg)
    device = resolve_device(str(cfg.device))
    cyclegan_config = None
    if cfg.cyclegan.ckpt and "cyclegan" in cfg.methods:
        cyclegan_config = load_checkpoint_file(cfg.cyclegan.ckpt)["run_config"]
    task = task_images(cfg, cyclegan_config)
    torch.manual_seed(int(cfg.seed))  # a random-weight loss network (gatys.vgg.weights=null) is a function of the seed
    runners = method_runners(cfg, device)
    content, style, targets = task["content"], task["style"], task["targets"]
    batch_size = int(cfg.batch_size)

    outputs: dict[str, Tensor] = {"input": to_rgb(content)}
    seconds: dict[str, float] = {"input": 0.0}
    diverged: dict[str, list[int]] = {}  # method -> content indices whose optimisation overflowed (Gatys)
    for name, run in runners.items():
        torch.manual_seed(int(cfg.seed))
        produced, spent = [], 0.0
        for start in range(0, len(content), batch_size):
            stop = min(start + batch_size, len(content))
            # CycleGAN takes the domain's channels (1 for colorization); the baselines take RGB
            batch = content[start:stop] if name == "cyclegan" else to_rgb(content[start:stop])
            seeds = [noise_seed(int(cfg.seed), index) for index in range(start, stop)]
            result = run(batch.to(device), to_rgb(style[start:stop]).to(device), seeds)
            produced.append(result.images.float().cpu())
            spent += result.seconds
            stopped = [start + offset for offset, detail in enumerate(result.details) if detail.get("diverged_at_step") is not None]
            if stopped:
                diverged.setdefault(name, []).extend(stopped)
        seconds[name] = spent / len(content)
        outputs[name] = to_rgb(torch.cat(produced).clamp(-1, 1))
        print(f"{name}: {len(content)} images, {seconds[name]:.2f} s per image")

    table = measure(cfg, outputs, content, targets, device)
    if task["truth"] is not None:
        for name, images in outputs.items():
            table[name].update(truth_errors(images, to_rgb(task["truth"])))
    for name in table:
        table[name]["seconds_per_image"] = seconds[name]
    return write_results(cfg, task, outputs, table, diverged)


def measure(cfg: DictConfig, outputs: dict[str, Tensor], content: Tensor, targets: Tensor, device: torch.device) -> dict[str, dict[str, float]]:
    extractor = instantiate(cfg.feature_extractor)().to(device)
    lpips = None
    if cfg.lpips.net_type is not None:
        lpips = load_lpips_network(str(cfg.lpips.net_type), cfg.paths.weights_dir, bool(cfg.lpips.allow_download)).to(device)
    # a random-weight judge (style_network.weights=null) is the same network in every run, whatever cfg.seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vgg = instantiate(cfg.style_network).to(device)
    style_distance = GramStyleDistance(vgg).fit(targets.to(device))
    real_features = pool_features(extractor, targets)
    table: dict[str, dict[str, float]] = {}
    for name, images in tqdm(outputs.items(), desc="measuring", unit="method"):
        row = feature_distances(real_features, pool_features(extractor, images), int(cfg.kid_subsets), int(cfg.seed))
        row.update(ssim_to_input=float(luma_ssim(images, content).mean()), style_distance=float(style_distance(images.to(device)).mean()))
        if lpips is not None:
            row["lpips_to_input"] = float(lpips_distance(lpips, images.to(device), content.to(device)).mean())
        table[name] = row
    return table


def truth_errors(outputs: Tensor, truth: Tensor) -> dict[str, float]:
    """Mean absolute error (in 0-255 grey levels) and PSNR (dB) of outputs against the true images."""
    error = (outputs.float() - truth.float()) / 2  # [-1, 1] -> [0, 1] units
    mse = error.pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return {"l1_to_truth": float(error.abs().mean() * 255), "psnr_to_truth": float((-10 * mse.log10()).mean())}


COLUMNS = (
    ("fid", "FID to target ↓"), ("kid_mean", "KID to target ↓"), ("style_distance", "Gram distance ↓"),
    ("lpips_to_input", "LPIPS to input ↓"), ("ssim_to_input", "luma SSIM to input ↑"), ("seconds_per_image", "s / image"),
)
#: where the task knows each content's answer (colorization)
TRUTH_COLUMNS = (("l1_to_truth", "L1 to truth (0-255) ↓"), ("psnr_to_truth", "PSNR to truth (dB) ↑"))


def write_results(
    cfg: DictConfig, task: dict[str, Any], outputs: dict[str, Tensor], table: dict[str, dict[str, float]], diverged: dict[str, list[int]]
) -> dict[str, dict[str, float]]:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    measured = next(iter(table.values()))
    columns = [(key, title) for key, title in (*COLUMNS, *TRUTH_COLUMNS) if key in measured]
    rows = [f"| method | {' | '.join(title for _, title in columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.items():
        label = "input, unchanged" if name == "input" else name
        rows.append(f"| {label} | " + " | ".join(f"{row[key]:.4g}" for key, _ in columns) + " |")
    header = (
        f"# Seed 004's comparison on `{task['data'].get('_target_')}` ({cfg.direction})\n\n"
        f"{len(task['content'])} content images, {len(task['targets'])} target-domain images; "
        f"feature extractor `{cfg.feature_extractor._target_}`.\n\n"
    )
    for name, indices in diverged.items():  # their outputs are their images of lowest loss
        header += f"{name}: the optimisation of {len(indices)} image(s) overflowed and stopped early (content {indices}).\n\n"
    markdown = header + "\n".join(rows) + "\n"
    (out_dir / "compare.md").write_text(markdown)
    summary = {
        "methods": table, "diverged": diverged, "direction": cfg.direction, "data": task["data"],
        "content": task["content_paths"], "style": task["style_paths"], "targets": task["target_paths"],
        "settings": OmegaConf.to_container(cfg, resolve=True),
    }
    (out_dir / "compare.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    torch.save(outputs, out_dir / "outputs.pt")
    flat = {f"{name}/{key}": value for name, row in table.items() for key, value in row.items()}
    (out_dir / "metrics.json").write_text(json.dumps({"metrics": flat}, indent=2) + "\n")
    shown = slice(0, int(cfg.grid_rows))
    columns = [("content", outputs["input"][shown]), ("style", to_rgb(task["style"][shown]))]
    columns += [(name, images[shown]) for name, images in outputs.items() if name != "input"]
    render_grid(columns).save(out_dir / "compare.png")
    print(markdown)
    print(f"wrote {out_dir / 'compare.md'}, compare.json, metrics.json and compare.png")
    return table


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    with user_errors_as_messages():
        compare(cfg)


if __name__ == "__main__":
    main()
