"""Reference points for the caption FID of run_tables.sh (``generate captions=N``, conv features):
the same distance from the same N held-out images to (a) N other real images (the floor: what
sampling alone gives), (b) N samples of each frozen GAN (what its G reaches without M), and (c) M's
reconstructions G(M(C_img(x))) of the held-out images themselves, per run (what M reaches from
image features, against what it reaches from their captions). Per run it also describes the images
made from the held-out captions (raw text, no noise, as ``generate captions=N noise=false``): the
fraction of object pixels (real: ~0.18) and of images with values outside [-1, 1] (blank white
after clipping), which the conv features cannot tell from real ones.

    python experiments/clip2gan_synthetic/references.py multirun/clip2gan_synthetic [N]

Writes references.json next to this file and prints a markdown table.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

from bicyclegan_pl.metrics import ConvFeatures
from bicyclegan_pl.metrics.distribution import feature_distances, pool_features
from bicyclegan_pl.models.checkpoint import model_from_checkpoint
from bicyclegan_pl.models.clip2gan import CLIP2GAN
from bicyclegan_pl.models.gan import UnconditionalGAN
from bicyclegan_pl.metrics.object_judge import object_masks


def main(runs: Path, count: int) -> None:
    torch.manual_seed(0)
    extractor = ConvFeatures(seed=0)  # conf/metrics/feature_extractor/conv.yaml's network, as generate uses it
    first = sorted(runs.glob("full/seed*/checkpoints/last.ckpt"))[0]
    _, checkpoint = model_from_checkpoint(first, expected=CLIP2GAN)
    data = dict(checkpoint["run_config"]["data"], val_size=count, train_size=max(count, checkpoint["run_config"]["data"]["train_size"]))
    datamodule = instantiate(data, _convert_="all")
    datamodule.setup("fit")
    held_out = torch.stack([datamodule.val_set[i]["B"] for i in range(count)])
    real = pool_features(extractor, held_out)
    captions = [datamodule.val_set[i]["caption"] for i in range(count)]
    rows: dict[str, dict[str, float]] = {}
    caption_images: dict[str, dict[str, float]] = {"held-out images": {"object_pixels": float(object_masks(held_out).float().mean()), "out_of_range": 0.0}}

    def distance(name: str, images: torch.Tensor) -> None:
        rows[name] = feature_distances(real, pool_features(extractor, images), kid_subsets=100, seed=0)

    with torch.no_grad():
        distance(f"{count} training images (real)", torch.stack([datamodule.train_set[i]["B"] for i in range(count)]))
        generators = {}
        for job in sorted(runs.glob("*/seed0/checkpoints/last.ckpt")):
            path = _run_config(job)["model"]["generator"]["path"]
            generators.setdefault(Path(path).name, path)
        for name, path in generators.items():
            gan, _ = model_from_checkpoint(path, expected=UnconditionalGAN)
            distance(f"samples of the frozen G ({name})", gan.sample(count, torch.Generator().manual_seed(0)))
        for job in sorted(runs.glob("*/seed*/checkpoints/last.ckpt")):
            model, _ = model_from_checkpoint(job, expected=CLIP2GAN)
            reconstructions = torch.cat([model.decode(model.image_features(held_out[i : i + 64])) for i in range(0, count, 64)])
            name = f"{job.parent.parent.parent.name}/{job.parent.parent.name}"
            distance(f"reconstructions, {name}", reconstructions)
            texts = torch.cat([model.decode(model.text_features(captions[i : i + 64])) for i in range(0, count, 64)])
            caption_images[name] = {
                "object_pixels": float(object_masks(texts.clamp(-1, 1)).float().mean()),
                "out_of_range": float((texts.abs().flatten(1).amax(1) > 1.5).float().mean()),
            }
    out = Path(__file__).with_name("references.json")
    out.write_text(json.dumps({"held_out_images": count, "features": "ConvFeatures(seed=0)", "rows": rows, "caption_images": caption_images}, indent=2) + "\n")
    print(f"| images against {count} held-out images | FID (conv) | KID (conv) |\n|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['fid']:.4f} | {row['kid_mean']:.5f} |")
    print("\n| images from the held-out captions | object pixels | out of [-1, 1] (max > 1.5) |\n|---|---|---|")
    for name, row in caption_images.items():
        print(f"| {name} | {row['object_pixels']:.3f} | {row['out_of_range']:.3f} |")


def _run_config(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["run_config"]


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 512)
