"""Slow: the default `make train` run learns several appearances per input (not a collapse)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from bicyclegan_pl.config import register_resolvers
from bicyclegan_pl.data.appearance import classify_appearance, mean_colour
from bicyclegan_pl.data.synthetic import SyntheticPairedDataset

REPO = Path(__file__).resolve().parents[1]


def appearance_statistics(model, dataset: SyntheticPairedDataset, num_inputs: int = 32, num_samples: int = 10):
    """Distinct appearances among random-z samples per input, and the colour error to the palette."""
    generator = torch.Generator().manual_seed(0)
    distinct, errors = [], []
    model.eval()
    for index in range(num_inputs):
        item = dataset[index]
        inputs = item["A"].unsqueeze(0).expand(num_samples, -1, -1, -1)
        masks = item["mask"].unsqueeze(0).expand(num_samples, -1, -1, -1)
        samples = model.translate(inputs, torch.randn(num_samples, model.nz, generator=generator))
        classes = classify_appearance(samples, masks, dataset.palette)
        distinct.append(len(set(classes.tolist())))
        errors.append((mean_colour(samples, masks) - dataset.palette[classes]).abs().mean())
    return sum(distinct) / len(distinct), float(torch.stack(errors).mean())


@pytest.mark.slow
def test_default_training_produces_several_appearances_per_input(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, "-m", "bicyclegan_pl.train", "logger=csv", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    register_resolvers()
    config = checkpoint["run_config"]
    model = instantiate(config["model"], _convert_="all")
    model.load_state_dict(checkpoint["state_dict"])
    data = config["data"]
    dataset = SyntheticPairedDataset(64, image_size=data["crop_size"], seed=data["seed"], split="val",
                                     num_appearances=data["num_appearances"], input_nc=data["input_nc"])
    distinct, colour_error = appearance_statistics(model, dataset)
    print(f"distinct appearances per input: {distinct:.2f} of {data['num_appearances']}; colour error {colour_error:.3f}")
    assert distinct >= 2.0, "random z should give several appearances per input"
    assert colour_error < 0.25, "samples should be close to a palette colour inside the object"
