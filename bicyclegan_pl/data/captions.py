"""Words for the synthetic world: every object's ground truth as attributes, captions that name
them in several phrasings, the zero-shot prompts of each attribute, and the attributes a prompt
names.

The attributes are what an image shows: the palette colour, the shape family, the size (the
object's circumradius below or above the middle of its range), the side of the image its centre
is on, and the fill (the unpaired set's domain A is plain, domain B striped). Captions are
generated from them, so a caption is never wrong about its image; metrics read the attributes,
never the caption.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch

from bicyclegan_pl.data.appearance import PALETTE_NAMES
from bicyclegan_pl.data.shapes import RADIUS_RANGE, FAMILIES, ObjectSpec

SIZES = ("small", "large")
POSITIONS = ("left", "right")
FILLS = ("plain", "striped")
#: attribute -> its values, in id order (colour ids are palette ids, family ids ``shapes.FAMILIES`` ids)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": PALETTE_NAMES,
    "family": FAMILIES,
    "size": SIZES,
    "position": POSITIONS,
    "fill": FILLS,
}
#: a radius below this is "small" (the middle of the drawn range, so both sizes are equally likely)
SMALL_BELOW = 0.5 * (RADIUS_RANGE[0] + RADIUS_RANGE[1])

#: caption phrasings; ``{family}`` is the family's words ("rounded rectangle"). The partial ones
#: ("a red object", "a star") teach the text encoder the words a user's prompt uses alone.
PHRASINGS: tuple[str, ...] = (
    "a {colour} {family}",
    "a {size} {colour} {family}",
    "a photo of a {colour} {family}",
    "a photo of a {size} {colour} {family}",
    "a {colour} {family} on the {position}",
    "a {size} {colour} {family} on the {position}",
    "a {fill} {colour} {family}",
    "a picture of a {size} {fill} {colour} {family} on the {position}",
    "a {colour} object",
    "a {family}",
    "a {size} object",
    "an object on the {position}",
    "a {fill} object",
)

#: one prompt per class, for zero-shot classification of each attribute (argmax over its values)
ZERO_SHOT_PROMPTS: dict[str, str] = {
    "colour": "a {} object",
    "family": "a {}",
    "size": "a {} object",
    "position": "an object on the {}",
    "fill": "a {} object",
}


def words(value: str) -> str:
    """An attribute value as caption words (``rounded_rectangle`` -> ``rounded rectangle``)."""
    return value.replace("_", " ")


@dataclass(frozen=True)
class ObjectAttributes:
    """The ground truth of one object, as values of :data:`ATTRIBUTES`."""

    colour: str
    family: str
    size: str
    position: str
    fill: str

    def ids(self) -> dict[str, int]:
        """attribute -> the value's index in :data:`ATTRIBUTES`."""
        return {name: ATTRIBUTES[name].index(value) for name, value in asdict(self).items()}


def object_attributes(spec: ObjectSpec, colour: str, fill: str = "plain") -> ObjectAttributes:
    if colour not in PALETTE_NAMES:
        raise ValueError(f"colour must be one of {PALETTE_NAMES}, got {colour!r}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    return ObjectAttributes(
        colour=colour,
        family=spec.family,
        size="small" if spec.radius < SMALL_BELOW else "large",
        position="left" if spec.center[0] < 0 else "right",
        fill=fill,
    )


def _articles(text: str) -> str:
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def caption(attributes: ObjectAttributes, phrasing: int) -> str:
    """The caption of ``attributes`` in phrasing ``phrasing`` (an index into :data:`PHRASINGS`)."""
    values = {name: words(value) for name, value in asdict(attributes).items()}
    return _articles(PHRASINGS[phrasing].format(**values))


def random_caption(attributes: ObjectAttributes, generator: torch.Generator) -> str:
    return caption(attributes, int(torch.randint(len(PHRASINGS), (), generator=generator)))


def zero_shot_prompts(attribute: str) -> list[str]:
    """The class prompts of ``attribute``, in id order ("a red object", "a green object", ...)."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; one of {', '.join(ATTRIBUTES)}")
    return [_articles(ZERO_SHOT_PROMPTS[attribute].format(words(value))) for value in ATTRIBUTES[attribute]]


def named_attributes(prompt: str) -> dict[str, str]:
    """The attribute values a prompt names, by whole words ("a small green star" -> colour green,
    size small, family star). Longer names win ("rounded rectangle" is not a rectangle)."""
    text = " " + re.sub(r"[^a-z]+", " ", prompt.lower()) + " "
    found: dict[str, str] = {}
    candidates = [(name, value) for name, values in ATTRIBUTES.items() for value in values]
    for name, value in sorted(candidates, key=lambda item: -len(words(item[1]))):
        phrase = f" {words(value)} "
        if name not in found and phrase in text:
            found[name] = value
            text = text.replace(phrase, " ")
    return found


def caption_vocabulary() -> list[str]:
    """Every word a caption or zero-shot prompt can contain (for building a tokenizer)."""
    texts = [phrasing for phrasing in PHRASINGS] + list(ZERO_SHOT_PROMPTS.values()) + ["an"]
    texts += [words(value) for values in ATTRIBUTES.values() for value in values]
    found = {word for text in texts for word in re.sub(r"\{\w*\}", " ", text).split()}
    return sorted(found)
