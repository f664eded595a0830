"""Text-guided generation with a trained CLIP2GAN (seed 003): ``python -m bicyclegan_pl.generate
ckpt=<clip2gan ckpt> prompt="a red star" num_samples=8`` (conf/generate.yaml).

Each prompt goes through CLIP's text encoder; fresh noise on the text feature gives diverse
images (the training's diversity noise, ``model.noise`` of the checkpoint). Writes
``generate.png`` (a row per prompt) and ``generate.json`` (prompts, settings, files) to out_dir.

``captions=N`` measures generation as the paper's FID does (Tables 3, 4 and 6): one image per
caption of the first N held-out images of the checkpoint's data, FID/KID of those images to the
held-out images (``feature_extractor``), and, on the synthetic objects, how often an image shows
the colour and family its caption names, and the fraction of images far out of range
(``caption_out_of_range``: some |value| > 3, blank after clipping).
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm.auto import tqdm

from bicyclegan_pl.config import register_resolvers, resolve_device, user_errors_as_messages
from bicyclegan_pl.data.captions import ATTRIBUTES, named_attributes
from bicyclegan_pl.errors import UserError
from bicyclegan_pl.metrics.distribution import feature_distances, pool_features
from bicyclegan_pl.metrics.object_judge import JUDGE_DESCRIPTION, ObjectJudge, attribute_hits
from bicyclegan_pl.models.checkpoint import model_from_checkpoint
from bicyclegan_pl.models.clip2gan import CLIP2GAN
from bicyclegan_pl.rendering import render_titled_rows
from bicyclegan_pl.text_inputs import as_prompts

register_resolvers()

# An image whose largest |value| exceeds this is far outside G's [-1, 1] range and shows as blank
# after clipping (unbounded W+ codes do this; stylegan2_synthetic's own samples reach 1.8, real
# images 1); generate captions=N reports how many there are.
OUT_OF_RANGE = 3.0


class GenerateSettingError(UserError, ValueError):
    """A setting of the generate command that cannot be used."""


def generate(cfg: DictConfig) -> dict:
    if int(cfg.num_samples) < 1:
        raise GenerateSettingError(f"num_samples={cfg.num_samples}: must be at least 1.")
    if int(cfg.captions) < 0:
        raise GenerateSettingError(f"captions={cfg.captions}: give a number of held-out images (0: off).")
    if cfg.prompt is None and not int(cfg.captions):
        raise GenerateSettingError('nothing to generate: give prompt="a red star" (or a list), or captions=N.')
    model, checkpoint = model_from_checkpoint(cfg.ckpt, expected=CLIP2GAN, purpose="generate")
    model.to(resolve_device(str(cfg.device)))
    generator = torch.Generator().manual_seed(int(cfg.seed))
    data = checkpoint["run_config"].get("data", {})
    shift = None
    if cfg.text_shift == "modality_gap":
        shift = modality_gap(model, data, int(cfg.gap_items))
    elif cfg.text_shift != "none":
        raise GenerateSettingError(f"text_shift={cfg.text_shift}: use none or modality_gap.")
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat: dict[str, float] = {}
    realism = None
    if int(cfg.captions):
        # its own noise draws, so that adding captions=N does not change the prompts' samples
        realism = caption_realism(cfg, model, data, torch.Generator().manual_seed(int(cfg.seed)), shift)
        flat.update({key: value for key, value in realism.items() if isinstance(value, float)})
    report = {"ckpt": str(cfg.ckpt), "seed": int(cfg.seed), "text_shift": str(cfg.text_shift)}
    if realism is not None:
        report["captions"] = realism
    if cfg.prompt is not None:
        report.update(prompt_report(cfg, model, data, generator, shift, out_dir, flat))
    if flat:  # flat numbers for `python -m bicyclegan_pl.report --eval <folder name>` over a multirun
        (out_dir / "metrics.json").write_text(json.dumps({"metrics": flat}, indent=2) + "\n")
    (out_dir / "generate.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def prompt_report(cfg: DictConfig, model: CLIP2GAN, data: dict, generator: torch.Generator, shift, out_dir: Path, flat: dict) -> dict:
    """``num_samples`` images per prompt: generate.png, images.pt and, on the synthetic objects,
    the ground truth's reading of them (added to ``flat``)."""
    prompts = as_prompts(cfg.prompt, "prompt")
    images = model.generate_from_text(prompts, int(cfg.num_samples), generator, noise=bool(cfg.noise), shift=shift)
    render_titled_rows(prompts, images.transpose(0, 1)).save(out_dir / "generate.png")
    torch.save(images.cpu(), out_dir / "images.pt")
    report = {
        "prompts": prompts,
        "num_samples": int(cfg.num_samples),
        "noise": {"on": bool(cfg.noise), "mean": model.noise_mean, "std": model.noise_std, "renormalize": model.noise_renormalize},
        "grid": "generate.png (a row per prompt)",
        "images": "images.pt: (num_samples, prompts, C, H, W) in [-1, 1]",
    }
    if is_synthetic_objects(data):
        report["ground_truth"] = truth = judge_prompts(images, prompts, int(data["crop_size"]))
        flat.update({f"text_{name}": result["accuracy"] for name, result in truth["attributes"].items()})
        flat["diversity_l1"] = truth["diversity_l1"]
        for name, result in truth["attributes"].items():
            print(f"  {name}: {result['accuracy']:.1%} of {result['images']} images show the named {name} (chance {result['chance']:.1%})")
    print(f"wrote {out_dir / 'generate.png'} ({len(prompts)} prompt(s) x {cfg.num_samples} samples)")
    return report


def is_synthetic_objects(data: dict) -> bool:
    return str(data.get("_target_", "")).endswith("SyntheticObjectsDataModule")


def caption_realism(cfg: DictConfig, model: CLIP2GAN, data: dict, generator: torch.Generator, shift) -> dict:
    """One image per caption of the first ``cfg.captions`` held-out images (noise and shift as set),
    FID/KID to those images; on the synthetic objects also the fraction showing the colour / family
    the caption names. Keys of the flat numbers end in the extractor's suffix (``fid_conv``)."""
    count = int(cfg.captions)
    if not data or "val_size" not in data:
        raise GenerateSettingError("captions=N needs the checkpoint's data to have a held-out split with captions (data=synthetic_objects).")
    datamodule = instantiate({**data, "val_size": max(int(data["val_size"]), count)}, _convert_="all")
    datamodule.setup("fit")
    items = [datamodule.val_set[index] for index in range(count)]
    if "caption" not in items[0]:
        raise GenerateSettingError(f"captions={count}: the checkpoint's data ({data['_target_']}) has no captions.")
    extractor = instantiate(cfg.feature_extractor)().to(model.device)  # a missing weights file stops us before any work
    real = torch.stack([item["B"] for item in items])
    captions = [item["caption"] for item in items]
    fake = torch.cat([
        model.generate_from_text(captions[start : start + 64], 1, generator, noise=bool(cfg.noise), shift=shift)[0].cpu()
        for start in tqdm(range(0, count, 64), desc="generating from captions", unit="batch")
    ])
    suffix = extractor.metric_suffix
    distances = feature_distances(pool_features(extractor, real), pool_features(extractor, fake), int(cfg.kid_subsets), int(cfg.seed))
    result: dict = {f"caption_{key}{suffix}": value for key, value in distances.items()}
    result.update(num_captions=count, feature_extractor=str(cfg.feature_extractor._target_))
    result["caption_out_of_range"] = float((fake.abs().flatten(1).amax(1) > OUT_OF_RANGE).float().mean())
    if is_synthetic_objects(data):
        judge = ObjectJudge(int(data["crop_size"]))
        hits = attribute_hits(judge.read(fake), captions, [named_attributes(caption) for caption in captions])
        result.update({f"caption_{name}": sum(values) / len(values) for name, values in hits.items()})
    render_titled_rows(captions[:8], torch.stack([real[:8], fake[:8]], 1), ["held-out image", "from its caption"]).save(
        Path(cfg.out_dir) / "captions.png"
    )
    print("generation from", count, "held-out captions:", ", ".join(f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float)))
    return result


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
