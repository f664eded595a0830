"""Images as people look at them: generated tensors in [-1, 1] turned into titled PNG grids.

One module for every picture the framework writes: the sample grids of training (the sample-grid
callback) and of ``evaluate`` (rows are inputs, columns what the system shows), and the CLIP
guidance grid of ``guide`` (a row per prompt, the input first, then the top-k outputs with their
scores). Nothing here knows Lightning, a system or a callback.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.utils import make_grid

HEADER_HEIGHT = 16  # pixels above a sample grid for its column titles
LINE = 14  # pixels of one line of text (PIL's default font)


def to_display(images: Tensor, min_size: int = 96) -> Tensor:
    """[-1, 1] images (any channel count) -> RGB in [0, 1], enlarged so small images stay legible."""
    images = images.detach().float().cpu()
    images = images[:, :1].expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]
    images = ((images + 1) / 2).clamp(0, 1)
    scale = max(1, -(-min_size // images.shape[-1]))
    return torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest") if scale > 1 else images


def render_grid(columns: list[tuple[str, Tensor]], padding: int = 2) -> Image.Image:
    """One row per input, one titled column per entry of ``columns`` ((N, C, H, W) each)."""
    titles = [title for title, _ in columns]
    images = [to_display(tensor) for _, tensor in columns]
    rows, size = images[0].shape[0], images[0].shape[-1]
    ordered = torch.stack(images, dim=1).reshape(rows * len(images), 3, size, images[0].shape[-2])
    grid = make_grid(ordered, nrow=len(images), padding=padding, pad_value=1.0)
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    body = Image.fromarray(array)
    canvas = Image.new("RGB", (body.width, body.height + HEADER_HEIGHT), "white")
    canvas.paste(body, (0, HEADER_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    for index, title in enumerate(titles):
        draw.text((padding + index * (size + padding) + 2, 2), title, fill="black")
    return canvas


def _to_pil(image: Tensor) -> Image.Image:
    array = (to_display(image.unsqueeze(0))[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    return Image.fromarray(array)


def render_guidance_grid(
    input_image: Tensor, names: Sequence[str], images: Tensor, scores: Tensor, padding: int = 4
) -> Image.Image:
    """The guidance result as one image: a row per prompt (its text above), the input first, then
    the top-k outputs, best first, each with its score below.

    input_image: (C, H, W); images: (P, k, C, H, W); scores: (P, k); in [-1, 1]."""
    source = _to_pil(input_image)
    size = source.width
    rows, columns = images.shape[0], images.shape[1] + 1
    row_height = LINE + size + LINE + padding
    canvas = Image.new("RGB", (padding + columns * (size + padding), padding + rows * row_height), "white")
    draw = ImageDraw.Draw(canvas)
    for row in range(rows):
        top = padding + row * row_height
        draw.text((padding, top), str(names[row])[: max(8, canvas.width // 6)], fill="black")
        cells = [(source, "input")] + [
            (_to_pil(images[row, index]), f"{float(scores[row, index]):.3f}") for index in range(images.shape[1])
        ]
        for column, (picture, label) in enumerate(cells):
            left = padding + column * (size + padding)
            canvas.paste(picture.resize((size, size), Image.NEAREST), (left, top + LINE))
            draw.text((left + 2, top + LINE + size + 1), label, fill="black")
    return canvas


def render_labelled_images(
    images: Tensor, labels: Sequence[str], correct: Sequence[bool], columns: int = 8, padding: int = 4
) -> Image.Image:
    """Images (N, C, H, W) in [-1, 1], each with a label below it, black when ``correct`` and red
    when not (a classifier's reading of held-out images)."""
    pictures = [_to_pil(image) for image in images]
    size = pictures[0].width
    rows = -(-len(pictures) // columns)
    cell_width = max(size, 6 * max((len(label) for label in labels), default=0) + 4)
    cell_height = size + LINE + padding
    canvas = Image.new("RGB", (padding + columns * (cell_width + padding), padding + rows * cell_height), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (picture, label, ok) in enumerate(zip(pictures, labels, correct)):
        left = padding + (index % columns) * (cell_width + padding)
        top = padding + (index // columns) * cell_height
        canvas.paste(picture, (left + (cell_width - size) // 2, top))
        draw.text((left + 2, top + size + 1), label, fill="black" if ok else "red")
    return canvas


def render_titled_rows(
    row_titles: Sequence[str], images: Tensor, labels: Sequence[str] | None = None, padding: int = 4
) -> Image.Image:
    """Rows of images, each row with its title above and the same ``labels`` under its columns
    (``generate``: a row per prompt; ``edit``: a row per input, a column per beta).

    images: (R, K, C, H, W) in [-1, 1]."""
    size = _to_pil(images[0, 0]).width
    rows, columns = images.shape[0], images.shape[1]
    row_height = LINE + size + (LINE if labels else 0) + padding
    canvas = Image.new("RGB", (padding + columns * (size + padding), padding + rows * row_height), "white")
    draw = ImageDraw.Draw(canvas)
    for row in range(rows):
        top = padding + row * row_height
        draw.text((padding, top), str(row_titles[row])[: max(8, canvas.width // 6)], fill="black")
        for column in range(columns):
            left = padding + column * (size + padding)
            canvas.paste(_to_pil(images[row, column]), (left, top + LINE))
            if labels:
                draw.text((left + 2, top + LINE + size + 1), str(labels[column]), fill="black")
    return canvas
