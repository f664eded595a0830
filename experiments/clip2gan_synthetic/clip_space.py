"""Where each CLIP puts text relative to images: the geometry M depends on (run_backbone.sh).

M is trained on image features only; at inference it gets text features. For each CLIP, on N
held-out synthetic objects (32 px, as clip2gan_synthetic) and their captions, on unit features:
- ``image_to_nearest_image``: cosine of each image to its nearest other image (how dense the
  image features M saw are);
- ``caption_to_own_image``: cosine of each caption to its own image;
- ``caption_to_nearest_image``, ``prompt_to_nearest_image``: cosine of each caption / each of the
  14 one-attribute prompts to its nearest image (how far outside M's training inputs text lands);
- ``gap_norm``: length of mean(image) - mean(text) over the pairs (``generate text_shift=modality_gap``);
- the same two nearest-image cosines after that shift (``*_shifted``).

    python experiments/clip2gan_synthetic/clip_space.py <clip folder> [<clip folder> ...] [--out F] [--count N]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bicyclegan_pl.clip.loading import load_clip
from bicyclegan_pl.data.datamodules import SyntheticObjectsDataModule

PROMPTS = [f"a {colour} object" for colour in ("red", "green", "blue", "yellow", "magenta", "cyan", "black", "gray")] + [
    "an ellipse", "a rectangle", "a rounded rectangle", "a triangle", "a polygon", "a star"]


def describe(name: str, images: torch.Tensor, captions: list[str]) -> dict[str, float]:
    clip = load_clip(name, local_files_only=True)
    with torch.no_grad():
        image = torch.cat([clip.encode_images(images[i : i + 128]) for i in range(0, len(images), 128)]).float()
        caption = clip.encode_text(captions).float()
        prompt = clip.encode_text(PROMPTS).float()
    between_images = image @ image.T
    between_images.fill_diagonal_(-2)
    gap = image.mean(0) - caption.mean(0)

    def nearest(text: torch.Tensor) -> float:
        return float((text @ image.T).max(1).values.mean())

    def shifted(text: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(text + gap, dim=1)

    return {
        "image_to_nearest_image": float(between_images.max(1).values.mean()),
        "caption_to_own_image": float((caption * image).sum(1).mean()),
        "caption_to_nearest_image": nearest(caption),
        "prompt_to_nearest_image": nearest(prompt),
        "gap_norm": float(gap.norm()),
        "caption_to_nearest_image_shifted": nearest(shifted(caption)),
        "prompt_to_nearest_image_shifted": nearest(shifted(prompt)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+")
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = SyntheticObjectsDataModule(crop_size=32, train_size=args.count, val_size=args.count, seed=0)
    data.setup("fit")
    items = [data.val_set[index] for index in range(args.count)]
    images = torch.stack([item["B"] for item in items])
    captions = [item["caption"] for item in items]
    rows = {name: describe(name, images, captions) for name in args.clips}
    keys = list(next(iter(rows.values())))
    print("| CLIP | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, row in rows.items():
        print(f"| {Path(name).name} | " + " | ".join(f"{row[key]:.3f}" for key in keys) + " |")
    if args.out:
        args.out.write_text(json.dumps({Path(name).name: row for name, row in rows.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
