"""Captions of the synthetic world: they name what the image shows, taken from its ground truth."""
from __future__ import annotations

import pytest
import torch

from bicyclegan_pl.data.appearance import PALETTE_NAMES, appearance_palette, classify_appearance
from bicyclegan_pl.data.captioned import SyntheticCaptionDataset
from bicyclegan_pl.data.captions import (
    ATTRIBUTES,
    PHRASINGS,
    SMALL_BELOW,
    ObjectAttributes,
    caption,
    caption_vocabulary,
    named_attributes,
    words,
    zero_shot_prompts,
)
from bicyclegan_pl.data.shapes import FAMILIES, render_mask
from bicyclegan_pl.data.synthetic import SyntheticPairedDataset, SyntheticUnpairedDataset


def test_every_phrasing_names_only_true_values_and_uses_the_right_article():
    truth = ObjectAttributes(colour="magenta", family="ellipse", size="large", position="left", fill="striped")
    texts = [caption(truth, index) for index in range(len(PHRASINGS))]
    for text in texts:
        named = named_attributes(text)
        assert named, text
        assert all(getattr(truth, name) == value for name, value in named.items()), text
        assert " a ellipse" not in " " + text and " a object" not in " " + text, text
    assert "a large magenta ellipse" in texts and "an ellipse" in texts
    # together the phrasings name every attribute
    assert set().union(*(named_attributes(text) for text in texts)) == set(ATTRIBUTES)


def test_named_attributes_prefers_the_longer_name():
    assert named_attributes("A small GREEN rounded rectangle!") == {
        "family": "rounded_rectangle", "colour": "green", "size": "small",
    }
    assert named_attributes("a rectangle")["family"] == "rectangle"
    assert named_attributes("a purple dog") == {}
    assert zero_shot_prompts("family")[:3] == ["an ellipse", "a rectangle", "a rounded rectangle"]
    with pytest.raises(ValueError, match="unknown attribute"):
        zero_shot_prompts("texture")


def _mask_centre_x(mask: torch.Tensor) -> float:
    columns = torch.linspace(-1, 1, mask.shape[-1])
    return float((mask[0].sum(0) * columns).sum() / mask.sum())


def test_caption_dataset_items_match_the_ground_truth_they_come_from():
    dataset = SyntheticCaptionDataset(96, image_size=32, render_sizes=(32,), noise=0.0, seed=3)
    palette = appearance_palette(len(PALETTE_NAMES))
    families, fills = set(), set()
    for index in range(len(dataset)):
        item, truth = dataset[index], dataset.attributes(index)
        named = named_attributes(item["caption"])
        assert all(getattr(truth, name) == value for name, value in named.items()), item["caption"]
        assert {name: int(item[name]) for name in ATTRIBUTES} == truth.ids()
        spec, _, _, _ = dataset._draw(index)
        mask = render_mask(spec, 32)
        if truth.fill == "plain":  # the image's colour inside the object is the named colour
            interior = mask * (torch.nn.functional.avg_pool2d(mask, 3, 1, 1) > 0.99)
            assert PALETTE_NAMES[int(classify_appearance(item["image"], interior, palette))] == truth.colour
        assert (spec.radius < SMALL_BELOW) == (truth.size == "small")
        if abs(spec.center[0]) > 0.1:  # the drawn object lies on the named side
            assert (_mask_centre_x(mask) < 0) == (truth.position == "left")
        families.add(truth.family)
        fills.add(truth.fill)
    assert families == set(FAMILIES) and fills == {"plain", "striped"}


def test_caption_dataset_is_deterministic_and_resizes_small_renders():
    dataset = SyntheticCaptionDataset(16, image_size=64, render_sizes=(32, 64))
    first, again = dataset[5], dataset[5]
    assert torch.equal(first["image"], again["image"]) and first["caption"] == again["caption"]
    assert all(dataset[index]["image"].shape == (3, 64, 64) for index in range(16))
    val = SyntheticCaptionDataset(16, image_size=64, split="val")
    assert not torch.equal(val[5]["image"], first["image"])
    with pytest.raises(ValueError, match="fills"):
        SyntheticCaptionDataset(4, fills=["dotted"])


def test_translation_datasets_describe_their_items():
    paired = SyntheticPairedDataset(12, image_size=32)
    for index in range(12):
        item, truth = paired[index], paired.attributes(index)
        assert truth.colour == PALETTE_NAMES[int(item["appearance"])] and truth.fill == "plain"
    unpaired = SyntheticUnpairedDataset(12, image_size=32, seed=1)
    assert {unpaired.attributes("A", i).fill for i in range(12)} == {"plain"}
    assert {unpaired.attributes("B", i).fill for i in range(12)} == {"striped"}


def test_vocabulary_holds_every_word_of_every_caption_and_prompt():
    vocabulary = set(caption_vocabulary())
    texts = [caption(ObjectAttributes(c, f, "small", "right", "plain"), p)
             for c in PALETTE_NAMES for f in FAMILIES for p in range(len(PHRASINGS))]
    texts += [prompt for name in ATTRIBUTES for prompt in zero_shot_prompts(name)]
    assert {word for text in texts for word in text.split()} <= vocabulary
    assert words("rounded_rectangle") == "rounded rectangle"
