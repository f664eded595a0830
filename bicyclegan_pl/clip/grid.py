"""The guidance result as one PNG: a row per prompt (its text above), the input first, then
the top-k outputs, best first, each with its score below."""
from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw
from torch import Tensor

from bicyclegan_pl.callbacks.sample_grid import to_display

LINE = 14  # pixels of one line of text (PIL's default font)


def _to_pil(image: Tensor) -> Image.Image:
    array = (to_display(image.unsqueeze(0))[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    return Image.fromarray(array)


def render_guidance_grid(
    input_image: Tensor, names: Sequence[str], images: Tensor, scores: Tensor, padding: int = 4
) -> Image.Image:
    """input_image: (C, H, W); images: (P, k, C, H, W); scores: (P, k); in [-1, 1]."""
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
