"""Text-guided editing with a trained CLIP2GAN (seed 003, Eq. 11-14): ``python -m bicyclegan_pl.edit
ckpt=<clip2gan ckpt> image=<file or folder> prompt="blue" beta=[0,0.25,0.5,0.75,1] space=gan|clip``
(conf/edit.yaml).

``space=gan``: z' = M(C_img(x)) + beta * M(C_text(t)), the paper's edit in the generator's latent
space; ``space=clip``: G(M(C_img(x) + beta * C_text(t))), the arithmetic in CLIP space that the
supplementary's Table 6 compares it with. Writes ``edit.png`` (a row per image: the input, then a
column per beta) and ``edit.json`` to out_dir.
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, ListConfig

from bicyclegan_pl.config import register_resolvers, resolve_device, user_errors_as_messages
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
    (prompt,) = as_prompts(cfg.prompt, "prompt")[:1]
    betas = _betas(cfg.beta)
    if cfg.space not in EDIT_SPACES:
        raise TextInputError(f"space={cfg.space}: use {' or '.join(EDIT_SPACES)}.")
    model, checkpoint = model_from_checkpoint(cfg.ckpt, expected=CLIP2GAN, purpose="edit")
    model.to(resolve_device(str(cfg.device)))
    files, images = image_inputs(cfg.image, int(checkpoint["run_config"]["data"]["crop_size"]))
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
    (out_dir / "edit.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir / 'edit.png'} ({len(files)} image(s) x {len(betas)} betas, {cfg.space} space)")
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="edit")
def main(cfg: DictConfig) -> None:
    with user_errors_as_messages():
        edit(cfg)


if __name__ == "__main__":
    main()
