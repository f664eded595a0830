"""Train the small CLIP of the synthetic world: ``python -m bicyclegan_pl.clip.pretrain [key=value ...]``
(conf/clip_pretrain.yaml).

Builds a transformers CLIP and its tokenizer (``clip.pretraining``), trains it with Lightning on
generated image–caption pairs, measures zero-shot accuracy per attribute on held-out images, and
writes the ``save_pretrained`` folder: first into the run folder (``<run>/clip``, also when the run
is interrupted), then, when training finished, to ``out_dir``, the folder ``clip.model=`` takes.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from bicyclegan_pl.clip.pretraining import (
    POSITIVES,
    ClipPretraining,
    build_clip_model,
    build_image_processor,
    build_tokenizer,
    resolve_label_weights,
)
from bicyclegan_pl.clip.zero_shot import zero_shot_predictions
from bicyclegan_pl.config import register_resolvers, user_errors_as_messages
from bicyclegan_pl.data.captioned import SyntheticCaptionDataset
from bicyclegan_pl.data.captions import ATTRIBUTES
from bicyclegan_pl.errors import UserError
from bicyclegan_pl.rendering import render_labelled_images

register_resolvers()


class PretrainSettingError(UserError, ValueError):
    """A setting of the CLIP pretraining command that cannot be used."""


def _datasets(cfg: DictConfig) -> tuple[SyntheticCaptionDataset, SyntheticCaptionDataset]:
    options = dict(
        image_size=cfg.data.image_size, render_sizes=list(cfg.data.render_sizes), seed=cfg.seed,
        num_colours=cfg.data.num_colours, fills=list(cfg.data.fills), noise=cfg.data.noise,
    )
    return (
        SyntheticCaptionDataset(cfg.data.train_size, split="train", **options),
        SyntheticCaptionDataset(cfg.data.val_size, split="val", **options),
    )


def _plain(value: Any) -> Any:
    """A config value as plain Python (lists and dicts rather than OmegaConf containers)."""
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def chance_levels(dataset: SyntheticCaptionDataset) -> dict[str, float]:
    """Accuracy of guessing the most frequent value of each attribute on ``dataset``."""
    counts = {name: torch.zeros(len(values)) for name, values in ATTRIBUTES.items()}
    for index in range(len(dataset)):
        for name, value in dataset.attributes(index).ids().items():
            counts[name][value] += 1
    return {name: float(count.max() / count.sum()) for name, count in counts.items()}


def write_report(module: ClipPretraining, val_set: SyntheticCaptionDataset, folder: Path, extra: dict[str, Any]) -> dict:
    """zero_shot.json (accuracy and chance per attribute; under "pictured" what the CLIP reads in the
    picture's images) and zero_shot.png (the first 32 held-out images, each labelled with the colour
    and family the CLIP reads; red where either is wrong)."""
    chance = chance_levels(val_set)
    report = {
        "zero_shot_accuracy": module.zero_shot,
        "chance": chance,
        "per_value_accuracy": module.zero_shot_per_value,
        "num_images": len(val_set),
        "prompts": "data.captions.ZERO_SHOT_PROMPTS, one per value, argmax",
        **extra,
    }
    items = [val_set[index] for index in range(min(32, len(val_set)))]
    images = torch.stack([item["image"] for item in items])
    # in eval mode, as the CLIP is used once loaded: a BatchNorm tower (MobileNetV2) in training mode
    # would read these 32 images with their own batch statistics and label them differently
    was_training = module.training
    module.eval()
    try:
        clip = module.as_clip()
        with torch.no_grad():
            embeddings = clip.encode_images(images.to(module.device))
        colours = zero_shot_predictions(clip, embeddings, "colour")
        families = zero_shot_predictions(clip, embeddings, "family")
    finally:
        module.train(was_training)
    report["pictured"] = [
        {"colour": ATTRIBUTES["colour"][c], "family": ATTRIBUTES["family"][f]} for c, f in zip(colours, families)
    ]
    (folder / "zero_shot.json").write_text(json.dumps(report, indent=2) + "\n")
    labels = [f"{ATTRIBUTES['colour'][c]} {ATTRIBUTES['family'][f]}".replace("_", " ") for c, f in zip(colours, families)]
    correct = [int(c) == int(item["colour"]) and int(f) == int(item["family"]) for c, f, item in zip(colours, families, items)]
    render_labelled_images(images, labels, correct).save(folder / "zero_shot.png")
    return report


def install(source: Path, target: Path) -> None:
    """Copy the finished folder to ``target`` so that a reader never sees half of it."""
    staging = target.with_name(target.name + ".incoming")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def pretrain(cfg: DictConfig) -> dict:
    out_dir = Path(cfg.out_dir).expanduser()
    if out_dir.exists() and not cfg.overwrite:
        raise PretrainSettingError(f"out_dir={out_dir} exists; pass overwrite=true to replace it or choose another out_dir.")
    if cfg.trainer.max_steps is None or int(cfg.trainer.max_steps) < 1:
        raise PretrainSettingError(f"trainer.max_steps={cfg.trainer.max_steps}: give a positive number of steps.")
    if cfg.loss.positives not in POSITIVES:
        raise PretrainSettingError(f"loss.positives={cfg.loss.positives}: use one of {', '.join(POSITIVES)}.")
    attributes, weights = _plain(cfg.loss.label_attributes), _plain(cfg.loss.label_weights)
    try:
        resolve_label_weights(attributes)
    except (ValueError, TypeError):
        raise PretrainSettingError(
            f"loss.label_attributes={attributes}: name attributes of the data ({', '.join(ATTRIBUTES)})."
        ) from None
    try:
        resolve_label_weights(attributes, weights)
    except (ValueError, TypeError, AttributeError):
        raise PretrainSettingError(
            f"loss.label_weights={weights}: give positive weights, e.g. {{family: 3}}, to attributes of "
            f"loss.label_attributes={attributes} (unlisted ones weigh 1)."
        ) from None
    if not 0 <= int(cfg.loss.label_steps) < int(cfg.trainer.max_steps):
        raise PretrainSettingError(
            f"loss.label_steps={cfg.loss.label_steps}: give 0 (captions only) or fewer steps than "
            f"trainer.max_steps={cfg.trainer.max_steps}, so that captions train the text side afterwards."
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.paths.output_dir)
    train_set, val_set = _datasets(cfg)
    tokenizer = build_tokenizer(cfg.model.max_length)
    model = build_clip_model(len(tokenizer), image_size=cfg.data.image_size, seed=cfg.seed, **cfg.model)
    module = ClipPretraining(
        model, tokenizer, build_image_processor(cfg.data.image_size), lr=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay, warmup_steps=cfg.optimizer.warmup_steps,
        total_steps=cfg.trainer.max_steps, positives=cfg.loss.positives,
        label_steps=cfg.loss.label_steps, label_attributes=attributes, label_weights=weights,
    )
    workers = int(cfg.data.num_workers)
    train_loader = DataLoader(
        train_set, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(cfg.seed),
    )
    val_loader = DataLoader(val_set, batch_size=250, num_workers=0)
    loggers = [instantiate(item) for item in (cfg.get("logger") or {}).values() if item and "_target_" in item]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False)
    started = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    seconds = time.perf_counter() - started
    trainer.validate(module, val_loader, verbose=False)
    saved = module.save(run_dir / "clip")
    report = write_report(
        module, val_set, saved,
        {"steps": trainer.global_step, "train_seconds": round(seconds, 1), "interrupted": trainer.interrupted,
         "settings": OmegaConf.to_container(cfg, resolve=True)},
    )
    print("zero-shot accuracy on", len(val_set), "held-out images (chance in brackets):")
    for name, accuracy in report["zero_shot_accuracy"].items():
        print(f"  {name:9s} {accuracy:6.1%}  ({report['chance'][name]:.1%})")
    if trainer.interrupted:
        print(f"interrupted after {trainer.global_step} steps: the CLIP so far is in {saved}; {out_dir} is unchanged")
        return report
    install(saved, out_dir)
    print(f"wrote the CLIP to {out_dir} ({seconds / 60:.1f} min of training); use it with clip.model={out_dir}")
    return report


@hydra.main(version_base="1.3", config_path="../../conf", config_name="clip_pretrain")
def main(cfg: DictConfig) -> None:
    with user_errors_as_messages():
        pretrain(cfg)


if __name__ == "__main__":
    main()
