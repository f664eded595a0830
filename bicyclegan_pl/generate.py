"""Text-guided generation with a trained CLIP2GAN (seed 003): ``python -m bicyclegan_pl.generate
ckpt=<clip2gan ckpt> prompt="a red star" num_samples=8`` (conf/generate.yaml).

Each prompt goes through CLIP's text encoder; fresh noise on the text feature gives diverse
images (the training's diversity noise, ``model.noise`` of the checkpoint). Writes
``generate.png`` (a row per prompt) and ``generate.json`` (prompts, settings, files) to out_dir.
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from bicyclegan_pl.config import register_resolvers, resolve_device, user_errors_as_messages
from bicyclegan_pl.data.captions import ATTRIBUTES, named_attributes
from bicyclegan_pl.errors import UserError
from bicyclegan_pl.metrics.object_judge import JUDGE_DESCRIPTION, ObjectJudge, attribute_hits
from bicyclegan_pl.models.checkpoint import model_from_checkpoint
from bicyclegan_pl.models.clip2gan import CLIP2GAN
from bicyclegan_pl.rendering import render_titled_rows
from bicyclegan_pl.text_inputs import as_prompts

register_resolvers()


class GenerateSettingError(UserError, ValueError):
    """A setting of the generate command that cannot be used."""


def generate(cfg: DictConfig) -> dict:
    prompts = as_prompts(cfg.prompt, "prompt")
    if int(cfg.num_samples) < 1:
        raise GenerateSettingError(f"num_samples={cfg.num_samples}: must be at least 1.")
    model, checkpoint = model_from_checkpoint(cfg.ckpt, expected=CLIP2GAN, purpose="generate")
    model.to(resolve_device(str(cfg.device)))
    generator = torch.Generator().manual_seed(int(cfg.seed))
    data = checkpoint["run_config"].get("data", {})
    shift = None
    if cfg.text_shift == "modality_gap":
        shift = modality_gap(model, data, int(cfg.gap_items))
    elif cfg.text_shift != "none":
        raise GenerateSettingError(f"text_shift={cfg.text_shift}: use none or modality_gap.")
    images = model.generate_from_text(prompts, int(cfg.num_samples), generator, noise=bool(cfg.noise), shift=shift)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    render_titled_rows(prompts, images.transpose(0, 1)).save(out_dir / "generate.png")
    torch.save(images.cpu(), out_dir / "images.pt")
    report = {
        "ckpt": str(cfg.ckpt),
        "prompts": prompts,
        "num_samples": int(cfg.num_samples),
        "noise": {"on": bool(cfg.noise), "mean": model.noise_mean, "std": model.noise_std, "renormalize": model.noise_renormalize},
        "seed": int(cfg.seed),
        "grid": "generate.png (a row per prompt)",
        "images": "images.pt: (num_samples, prompts, C, H, W) in [-1, 1]",
    }
    report["text_shift"] = str(cfg.text_shift)
    if str(data.get("_target_", "")).endswith("SyntheticObjectsDataModule"):
        report["ground_truth"] = truth = judge_prompts(images, prompts, int(data["crop_size"]))
        # flat numbers for `python -m bicyclegan_pl.report --eval <folder name>` over a multirun
        flat = {f"text_{name}": result["accuracy"] for name, result in truth["attributes"].items()}
        flat["diversity_l1"] = truth["diversity_l1"]
        (out_dir / "metrics.json").write_text(json.dumps({"metrics": flat}, indent=2) + "\n")
        for name, result in report["ground_truth"]["attributes"].items():
            print(f"  {name}: {result['accuracy']:.1%} of {result['images']} images show the named {name} (chance {result['chance']:.1%})")
    (out_dir / "generate.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir / 'generate.png'} ({len(prompts)} prompt(s) x {cfg.num_samples} samples)")
    return report


def modality_gap(model: CLIP2GAN, data: dict, count: int) -> torch.Tensor:
    """CLIP's image - text offset, measured on the first ``count`` training images of the checkpoint's
    data and their captions (the synthetic objects have them)."""
    if not str(data.get("_target_", "")).endswith("SyntheticObjectsDataModule"):
        raise GenerateSettingError("text_shift=modality_gap needs captioned training images: a checkpoint trained on data=synthetic_objects.")
    datamodule = instantiate(data, _convert_="all")
    datamodule.setup("fit")
    items = [datamodule.train_set[index] for index in range(min(count, len(datamodule.train_set)))]
    return model.modality_gap(torch.stack([item["B"] for item in items]), [item["caption"] for item in items])


def prompt_diversity(images: torch.Tensor) -> float:
    """Mean absolute pixel difference between two samples of one prompt, over all pairs and prompts
    (images: (S, P, C, H, W)); 0 when the noise changes nothing."""
    samples = images.shape[0]
    if samples < 2:
        return 0.0
    pairs = [(images[i] - images[j]).abs().mean() for i in range(samples) for j in range(i + 1, samples)]
    return float(torch.stack(pairs).mean())


def judge_prompts(images: torch.Tensor, prompts: list[str], image_size: int) -> dict:
    """On the synthetic objects: the fraction of images showing the colour / family their prompt
    names, read from the ground truth (``metrics.object_judge``), next to chance and the judge's
    own accuracy on real images."""
    judge = ObjectJudge(image_size)
    readings = judge.read(images.transpose(0, 1).flatten(0, 1).cpu())  # prompt-major
    hits = attribute_hits(readings, prompts, [named_attributes(prompt) for prompt in prompts])
    return {
        "diversity_l1": prompt_diversity(images),
        "attributes": {
            name: {"accuracy": sum(values) / len(values), "images": len(values), "chance": 1.0 / len(ATTRIBUTES[name])}
            for name, values in hits.items()
        },
        "judge_accuracy_on_real_images": judge.accuracy_on_real(),
        "judge": JUDGE_DESCRIPTION,
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    with user_errors_as_messages():
        generate(cfg)


if __name__ == "__main__":
    main()
