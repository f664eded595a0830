"""Style transfer with seed 004's baselines: ``python -m bicyclegan_pl.stylize method=gatys
content=<image or folder> style=<image or folder>`` (conf/stylize.yaml).

Every content image is stylised with every style image, ``batch_size`` content images at a time
with one style image. A method is a name in :data:`METHODS` whose builder, given the config and the
device, loads what it needs once and returns a
:data:`~bicyclegan_pl.style_transfer.result.StylizeFunction`; adding a method is adding an entry.

Writes to out_dir: per pair ``pairs/<content>__<style>.png`` (content | style | result) and
``.json`` (the method's per-image details, seconds, settings), and for the run ``stylize.png`` (a
row of style images, then a row per content image with its results) and ``stylize.json``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from bicyclegan_pl.config import register_resolvers, resolve_device, user_errors_as_messages
from bicyclegan_pl.data.errors import BadImageError
from bicyclegan_pl.data.images import IMAGE_EXTENSIONS, image_files, open_rgb
from bicyclegan_pl.data.transforms import paired_transform, to_image
from bicyclegan_pl.errors import UserError
from bicyclegan_pl.nets.vgg import VGGFeatures
from bicyclegan_pl.rendering import render_grid, render_titled_rows
from bicyclegan_pl.style_transfer.gatys import GatysSettings, gatys_stylize
from bicyclegan_pl.style_transfer.result import Stylized, StylizeFunction

register_resolvers()

#: the summary grid shows at most this many content images (rows) and style images (columns)
SUMMARY_CONTENT = 16
SUMMARY_STYLES = 8


class StylizeSettingError(UserError, ValueError):
    """A setting or input of the stylize command that cannot be used."""


def gatys_method(cfg: DictConfig, device: torch.device) -> StylizeFunction:
    """Gatys et al. with the settings of conf/stylize.yaml's method=gatys block, on a frozen VGG
    loaded once for the whole run."""
    if not isinstance(cfg.style_layers, DictConfig):
        raise StylizeSettingError(f"style_layers={cfg.style_layers}: give {{layer: weight, ...}}, e.g. {{relu1_1: 0.5, relu2_1: 0.5}}.")
    settings = GatysSettings(
        content_layer=str(cfg.content_layer),
        style_layers={str(layer): _number(cfg.style_layers, layer) for layer in cfg.style_layers},
        content_weight=_number(cfg, "content_weight"),
        style_weight=_number(cfg, "style_weight"),
        optimizer=str(cfg.optimizer),
        steps=int(_number(cfg, "steps")),
        lr=None if cfg.lr is None else _number(cfg, "lr"),
        init=str(cfg.init),
    )
    vgg = VGGFeatures(
        arch=str(cfg.vgg.arch),
        layers=settings.layers,
        pooling=str(cfg.pooling),
        weights=None if cfg.vgg.weights is None else str(cfg.vgg.weights),
        weights_dir=cfg.paths.weights_dir,
        allow_download=bool(cfg.vgg.allow_download),
        preprocessing=str(cfg.vgg.get("preprocessing", "auto")),
    ).to(device)
    normalize = cfg.vgg.get("normalize")
    if normalize is not None and normalize.get("images") is not None:  # Gatys et al.'s rescaling, on these images
        _, images = load_images(normalize.images, "vgg.normalize.images", _positive(normalize, "size"), _positive(normalize, "count"))
        vgg.normalize_activations(images.to(device))

    def run(content: Tensor, style: Tensor, seeds: Sequence[int]) -> Stylized:
        return gatys_stylize(vgg, content, style, settings, seeds)

    return run


def ghiasi_method(cfg: DictConfig, device: torch.device) -> StylizeFunction:
    """Ghiasi et al.: a checkpoint of ``+experiment=arbitrary_style_*`` (``ckpt``), one forward pass per
    batch, the style embedding mixed with the content's own by ``interpolation`` (1: full style)."""
    from bicyclegan_pl.models.arbitrary_style import ArbitraryStyleTransfer
    from bicyclegan_pl.models.checkpoint import model_from_checkpoint

    if cfg.ckpt is None:
        raise StylizeSettingError("method=ghiasi needs ckpt=<a checkpoint of python -m bicyclegan_pl.train +experiment=arbitrary_style_...>.")
    interpolation = _number(cfg, "interpolation")
    model, _ = model_from_checkpoint(cfg.ckpt, expected=ArbitraryStyleTransfer, purpose="stylize method=ghiasi")
    model.to(device)

    def run(content: Tensor, style: Tensor, seeds: Sequence[int]) -> Stylized:  # noqa: ARG001 (deterministic)
        started = time.perf_counter()
        images = model.stylize(content, style, interpolation)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return Stylized(images, time.perf_counter() - started, [{"interpolation": interpolation} for _ in content])

    return run


#: method name -> builder (config, device) -> StylizeFunction
METHODS: dict[str, Callable[[DictConfig, torch.device], StylizeFunction]] = {"gatys": gatys_method, "ghiasi": ghiasi_method}


def load_images(path: Any, key: str, image_size: int, limit: int | None) -> tuple[list[Path], Tensor]:
    """The image at ``path``, or the images under the folder (recursively, sorted; the first
    ``limit``), as (N, 3, image_size, image_size) in [-1, 1]."""
    path = Path(str(path)).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = image_files(path)
        if not files:
            raise StylizeSettingError(f"{key}={path}: the folder holds no image ({', '.join(IMAGE_EXTENSIONS)}).")
    else:
        raise StylizeSettingError(f"{key}={path}: no such file or folder.")
    files = files[:limit] if limit is not None else files
    transform = paired_transform(image_size, image_size, train=False)
    images = []
    for file in files:
        try:
            images.append(transform(to_image(open_rgb(file), 3)))
        except BadImageError as error:
            raise StylizeSettingError(f"{key} image {file} cannot be read ({error.__cause__ or error}).") from error
    return files, torch.stack(images)


def _positive(cfg: DictConfig, key: str, optional: bool = False) -> int | None:
    value = cfg[key]
    if optional and value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise StylizeSettingError(f"{key}={value}: give a whole number of at least 1{' (or null)' if optional else ''}.")
    return value


def _number(node: DictConfig, key: str) -> float:
    try:
        return float(node[key])
    except (TypeError, ValueError) as error:
        raise StylizeSettingError(f"{key}={node[key]}: give a number.") from error


def noise_seed(seed: int, pair: int) -> int:
    """The noise seed of pair number ``pair``: independent streams per (seed, pair)."""
    return int(np.random.SeedSequence([seed, pair]).generate_state(1)[0])


def pair_name(content_index: int, content_file: Path, style_index: int, style_file: Path) -> str:
    """Numbered, since recursive folders may hold files of the same name."""
    return f"{content_index:04d}-{content_file.stem}__{style_index:03d}-{style_file.stem}"


def stylize(cfg: DictConfig) -> dict[str, Any]:
    if cfg.method not in METHODS:
        raise StylizeSettingError(f"method={cfg.method}: unknown; choose from {', '.join(METHODS)}.")
    image_size, batch_size = _positive(cfg, "image_size"), _positive(cfg, "batch_size")
    content_files, content = load_images(cfg.content, "content", image_size, _positive(cfg, "max_content", optional=True))
    style_files, styles = load_images(cfg.style, "style", image_size, _positive(cfg, "max_style", optional=True))
    device = resolve_device(str(cfg.device))
    torch.manual_seed(int(cfg.seed))
    run = METHODS[cfg.method](cfg, device)
    out_dir = Path(cfg.out_dir)
    (out_dir / "pairs").mkdir(parents=True, exist_ok=True)
    settings = OmegaConf.to_container(cfg, resolve=True)
    pairs: list[dict[str, Any]] = []
    summary = torch.ones(min(len(content), SUMMARY_CONTENT) + 1, min(len(styles), SUMMARY_STYLES) + 1, *content.shape[1:])
    summary[0, 1:] = styles[:SUMMARY_STYLES]
    summary[1:, 0] = content[:SUMMARY_CONTENT]
    for style_index, style_file in enumerate(style_files):
        style = styles[style_index : style_index + 1]
        for start in range(0, len(content), batch_size):
            indices = range(start, min(start + batch_size, len(content)))
            seeds = [noise_seed(int(cfg.seed), style_index * len(content) + index) for index in indices]
            result = run(content[start : indices.stop].to(device), style.to(device), seeds)
            images = result.images.detach().float().cpu()
            print(f"style {style_index + 1}/{len(styles)}, content {start + 1}-{indices.stop} of {len(content)}: {result.seconds:.1f} s")
            for offset, index in enumerate(indices):
                name = pair_name(index, content_files[index], style_index, style_file)
                columns = [("content", content[index : index + 1]), ("style", style), (str(cfg.method), images[offset : offset + 1])]
                render_grid(columns).save(out_dir / "pairs" / f"{name}.png")
                record = {
                    "method": str(cfg.method),
                    "content": str(content_files[index]),
                    "style": str(style_file),
                    "grid": f"pairs/{name}.png",
                    "seconds": result.seconds / len(indices),
                    "batch_seconds": result.seconds,
                    "batch_size": len(indices),
                    **result.details[offset],
                }
                (out_dir / "pairs" / f"{name}.json").write_text(json.dumps({**record, "settings": settings}, indent=2) + "\n")
                # the run's summary leaves out per-step lists (the pair's JSON has them)
                pairs.append({"json": f"pairs/{name}.json", **{key: value for key, value in record.items() if not isinstance(value, list)}})
                if index < SUMMARY_CONTENT and style_index < SUMMARY_STYLES:
                    summary[index + 1, style_index + 1] = images[offset]
    labels = ["", *(file.stem for file in style_files[:SUMMARY_STYLES])]
    titles = ["style images", *(file.name for file in content_files[:SUMMARY_CONTENT])]
    render_titled_rows(titles, summary, labels).save(out_dir / "stylize.png")
    report = {
        "method": str(cfg.method),
        "content": [str(file) for file in content_files],
        "style": [str(file) for file in style_files],
        "pairs": pairs,
        "seconds": sum(pair["seconds"] for pair in pairs),
        "seconds_per_image": sum(pair["seconds"] for pair in pairs) / len(pairs),
        "grid": f"stylize.png (first row: style images; then a row per content image, the first {SUMMARY_CONTENT} x {SUMMARY_STYLES} styles)",
        "settings": settings,
    }
    (out_dir / "stylize.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {len(pairs)} pair(s) to {out_dir} ({report['seconds_per_image']:.2f} s per image)")
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="stylize")
def main(cfg: DictConfig) -> None:
    with user_errors_as_messages():
        stylize(cfg)


if __name__ == "__main__":
    main()
