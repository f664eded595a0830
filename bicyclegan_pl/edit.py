"""Text-guided editing with a trained CLIP2GAN (seed 003, Eq. 11-14): ``python -m bicyclegan_pl.edit
ckpt=<clip2gan ckpt> image=<file or folder> prompt="blue" beta=[0,0.25,0.5,0.75,1] space=gan|clip``
(conf/edit.yaml).

``space=gan``: z' = M(C_img(x)) + beta * M(C_text(t)), the paper's edit in the generator's latent
space; ``space=clip``: G(M(C_img(x) + beta * C_text(t))), the arithmetic in CLIP space that the
supplementary's Table 6 compares it with. Writes ``edit.png`` (a row per image: the input, then a
column per beta) and ``edit.json`` to out_dir. ``val_inputs=N`` edits the first N validation images
of a checkpoint trained on the synthetic objects and measures, per beta and from the ground truth,
how often the edit shows what the prompt names, what it keeps, and the object's mask IoU.
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from bicyclegan_pl.config import register_resolvers, resolve_device, user_errors_as_messages
from bicyclegan_pl.data.captions import ATTRIBUTES, named_attributes
from bicyclegan_pl.metrics.object_judge import JUDGE_DESCRIPTION, ObjectJudge, object_masks
from bicyclegan_pl.models.checkpoint import model_from_checkpoint
from bicyclegan_pl.models.clip2gan import CLIP2GAN, EDIT_SPACES
from bicyclegan_pl.rendering import render_titled_rows
from bicyclegan_pl.text_inputs import TextInputError, as_prompts, image_inputs

register_resolvers()


def _betas(value) -> list[float]:
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    try:
        return [float(item) for item in items]
    except (TypeError, ValueError) as error:
        raise TextInputError(f"beta={value!r}: give numbers, e.g. beta=[0,0.25,0.5,0.75,1].") from error


def edit(cfg: DictConfig) -> dict:
    prompts = as_prompts(cfg.prompt, "prompt")
    if len(prompts) > 1:
        raise TextInputError(f"prompt={cfg.prompt}: edit takes one text (run it once per prompt).")
    (prompt,) = prompts
    betas = _betas(cfg.beta)
    if cfg.space not in EDIT_SPACES:
        raise TextInputError(f"space={cfg.space}: use {' or '.join(EDIT_SPACES)}.")
    model, checkpoint = model_from_checkpoint(cfg.ckpt, expected=CLIP2GAN, purpose="edit")
    model.to(resolve_device(str(cfg.device)))
    data = checkpoint["run_config"]["data"]
    truth = None
    if cfg.get("val_inputs") is not None:
        if cfg.image is not None:
            raise TextInputError(f"image={cfg.image} and val_inputs={cfg.val_inputs}: give one of them.")
        files, images, truth = validation_inputs(data, int(cfg.val_inputs))
    elif cfg.image is None:
        raise TextInputError("no input: give image=<file or folder>, or val_inputs=N for the checkpoint's validation images.")
    else:
        files, images = image_inputs(cfg.image, int(data["crop_size"]))
    edited = model.edit(images, prompt, betas, space=str(cfg.space))  # (betas, N, C, H, W)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = torch.cat([images.unsqueeze(1).to(edited.device), edited.transpose(0, 1)], dim=1)
    labels = ["input", *(f"beta {beta:g}" for beta in betas)]
    render_titled_rows([file.name for file in files], rows, labels).save(out_dir / "edit.png")
    report = {
        "ckpt": str(cfg.ckpt),
        "images": [str(file) for file in files],
        "prompt": prompt,
        "beta": betas,
        "space": str(cfg.space),
        "grid": "edit.png (a row per image: the input, then a column per beta)",
    }
    if truth is not None:
        report["ground_truth"] = judge_edits(images, edited.cpu(), truth, prompt, betas, int(data["crop_size"]))
        # flat numbers for `python -m bicyclegan_pl.report --eval <folder name>` over a multirun
        flat = {f"{key}@{row['beta']:g}": value for row in report["ground_truth"]["per_beta"] for key, value in row.items() if key != "beta"}
        (out_dir / "metrics.json").write_text(json.dumps({"metrics": flat}, indent=2) + "\n")
        for beta, result in zip(betas, report["ground_truth"]["per_beta"]):
            print(f"  beta {beta:g}: " + ", ".join(f"{key} {value:.2f}" for key, value in result.items() if key != "beta"))
    (out_dir / "edit.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir / 'edit.png'} ({len(files)} image(s) x {len(betas)} betas, {cfg.space} space)")
    return report


def validation_inputs(data: dict, count: int) -> tuple[list[Path], torch.Tensor, dict[str, torch.Tensor]]:
    """The first ``count`` validation images of the checkpoint's synthetic objects, with their attributes."""
    if count < 1:
        raise TextInputError(f"val_inputs={count}: must be at least 1.")
    if not str(data.get("_target_", "")).endswith("SyntheticObjectsDataModule"):
        raise TextInputError("val_inputs needs a checkpoint trained on data=synthetic_objects (whose ground truth is known); give image=... instead.")
    datamodule = instantiate(data, _convert_="all")
    datamodule.setup("validate")
    items = [datamodule.val_set[index] for index in range(min(count, len(datamodule.val_set)))]
    truth = {name: torch.stack([item[name] for item in items]) for name in ("colour", "family")}
    return [Path(f"val_{index:04d}") for index in range(len(items))], torch.stack([item["B"] for item in items]), truth


def judge_edits(images, edited, truth, prompt: str, betas, image_size: int) -> dict:
    """Per beta, from the ground truth: ``success`` (the edit shows what the prompt names), ``kept_*``
    (the attributes the prompt does not name are unchanged), ``mask_iou`` (the object stays where and
    what shape it was) and ``reconstructed_*`` at beta 0's reading of the input attributes."""
    judge = ObjectJudge(image_size)
    named = named_attributes(prompt)
    input_masks = object_masks(images).float()
    results = []
    for beta, outputs in zip(betas, edited):
        readings = judge.read(outputs)
        masks = object_masks(outputs).float()
        intersection = (input_masks * masks).sum(1)
        union = input_masks.sum(1) + masks.sum(1) - intersection
        result = {"beta": float(beta), "mask_iou": float((intersection / union.clamp(min=1)).mean())}
        for name in ("colour", "family"):
            if name in named:
                wanted = ATTRIBUTES[name].index(named[name])
                result[f"success_{name}"] = float((readings[name] == wanted).float().mean())
            else:
                result[f"kept_{name}"] = float((readings[name] == truth[name]).float().mean())
        results.append(result)
    return {
        "per_beta": results,
        "named": named,
        "inputs": len(images),
        "judge_accuracy_on_real_images": judge.accuracy_on_real(),
        "judge": JUDGE_DESCRIPTION,
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="edit")
def main(cfg: DictConfig) -> None:
    with user_errors_as_messages():
        edit(cfg)


if __name__ == "__main__":
    main()
