"""Text control measured against the ground truth (seed 000's claim that CLIP steers a trained
BicycleGAN post hoc): for a prompt that names a colour, the fraction of chosen outputs that show
that colour, read from the pixels inside the true object mask (``appearance.recognise_appearance``),
never from CLIP. An output that shows no palette colour (noise, a grey blur) counts as a miss.

Next to it stand the chance level (1/K for K equally likely appearances) and the random-z
baseline (the fraction of outputs for random codes that show the colour), so a number says how
much the guidance added. Only the colour is measured: the synthetic translators keep the input's
shape, so colour is the attribute a prompt can change.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bicyclegan_pl.data.appearance import PALETTE_NAMES, recognise_appearance
from bicyclegan_pl.data.captions import named_attributes


def prompt_colour(prompt: str, num_appearances: int) -> int | None:
    """The palette id of the colour a prompt names, if the data has that colour; else None."""
    colour = named_attributes(prompt).get("colour")
    if colour is None or PALETTE_NAMES.index(colour) >= num_appearances:
        return None
    return PALETTE_NAMES.index(colour)


def colour_hits(images: Tensor, mask: Tensor, palette: Tensor, colour: int) -> Tensor:
    """(N,) bool: which of ``images`` (N, 3, H, W) in [-1, 1] show palette colour ``colour`` inside
    ``mask`` ((1, H, W) or (N, 1, H, W), the input's true object) on a white background."""
    masks = mask.expand(len(images), 1, *images.shape[-2:]) if mask.dim() == 3 else mask
    return recognise_appearance(images, masks.to(images.device), palette.to(images.device)).cpu() == colour


@dataclass
class PromptTally:
    prompt: str
    colour: int | None
    top1: list[bool] = field(default_factory=list)  # per input: the best output has the colour
    top_k: list[float] = field(default_factory=list)  # per input: fraction of the k chosen outputs
    random: list[float] = field(default_factory=list)  # per input: fraction of random-z outputs


class TextControl:
    """Accumulates, input by input, how often each prompt's chosen outputs show its colour."""

    def __init__(self, prompts: Sequence[str], palette: Tensor):
        self.palette = palette
        self.tallies = [PromptTally(prompt, prompt_colour(prompt, len(palette))) for prompt in prompts]

    @property
    def measurable(self) -> bool:
        return any(tally.colour is not None for tally in self.tallies)

    def add(self, chosen: Tensor, random_outputs: Tensor, mask: Tensor) -> None:
        """chosen: (P, k, 3, H, W), best first, one row per prompt; random_outputs: (R, 3, H, W) for
        random codes; mask: (1, H, W) the input's true object."""
        for tally, outputs in zip(self.tallies, chosen):
            if tally.colour is None:
                continue
            hits = colour_hits(outputs, mask, self.palette, tally.colour)
            tally.top1.append(bool(hits[0]))
            tally.top_k.append(float(hits.float().mean()))
            tally.random.append(float(colour_hits(random_outputs, mask, self.palette, tally.colour).float().mean()))

    def summary(self) -> list[dict]:
        rows = []
        for tally in self.tallies:
            row: dict = {"prompt": tally.prompt}
            if tally.colour is None:
                named = named_attributes(tally.prompt).get("colour")
                row["measured"] = (
                    f"{named} is not one of the data's {len(self.palette)} appearances" if named
                    else "the prompt names no palette colour"
                )
            else:
                count = len(tally.top1)
                row.update(
                    colour=PALETTE_NAMES[tally.colour], num_inputs=count,
                    top1=sum(tally.top1) / count, top_k=sum(tally.top_k) / count,
                    random_z=sum(tally.random) / count, chance=1.0 / len(self.palette),
                )
            rows.append(row)
        return rows


def text_control_table(rows: Sequence[dict], method: str) -> str:
    """Markdown: one line per prompt that names a colour of the data."""
    lines = [
        f"| prompt | colour | inputs | best output ({method}) | top-k outputs | random z | chance |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "top1" in row:
            lines.append(
                f"| {row['prompt']} | {row['colour']} | {row['num_inputs']} | {row['top1']:.2f} | {row['top_k']:.2f} "
                f"| {row['random_z']:.2f} | {row['chance']:.2f} |"
            )
        else:
            lines.append(f"| {row['prompt']} | not measured: {row['measured']} | | | | | |")
    return "\n".join(lines) + "\n"


def random_outputs(generate, nz: int, count: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``count`` outputs for codes z ~ N(0, I) (the baseline the guidance is compared with)."""
    with torch.no_grad():
        return generate(torch.randn(count, nz, generator=generator).to(device))
