"""The small CLIP of the synthetic world: its tokenizer, its training through the real command, and
its folder loading through the same loader as a hub id."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from bicyclegan_pl.clip import load_clip
from bicyclegan_pl.clip.pretrain import PretrainSettingError, pretrain, write_report
from bicyclegan_pl.clip.pretraining import (
    LABEL_LOGIT_SCALE,
    ClipPretraining,
    build_clip_model,
    build_image_processor,
    build_tokenizer,
    caption_matches,
    label_logits,
    label_loss,
    multi_positive_loss,
    resolve_label_weights,
)
from bicyclegan_pl.clip.siamese import ClipImageEmbedder
from bicyclegan_pl.clip.zero_shot import per_value_accuracy, zero_shot_accuracy, zero_shot_predictions
from bicyclegan_pl.data.captioned import SyntheticCaptionDataset
from bicyclegan_pl.data.captions import ATTRIBUTES, caption_vocabulary, named_attributes
from tests.helpers import compose_config

TINY_PRETRAINING = [
    "data.image_size=32", "data.render_sizes=[32]", "data.train_size=512", "data.val_size=64",
    "data.batch_size=32", "data.num_workers=0",
    "model.patch_size=8", "model.vision_width=32", "model.vision_layers=1",
    "model.mobilenet_width=0.1", "model.text_width=32",
    "model.text_layers=1", "model.heads=2", "model.projection_dim=16",
    "optimizer.warmup_steps=2", "optimizer.lr=2e-3",
    "trainer.max_steps=40", "trainer.val_check_interval=20", "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
]


def _config(tmp_path, *overrides):
    return compose_config(
        *TINY_PRETRAINING, f"out_dir={tmp_path / 'clip'}", *overrides,
        tiny=False, config_name="clip_pretrain", output_dir=str(tmp_path / "run"),
    )


def test_tokenizer_spells_caption_words_as_one_token_and_any_text_without_unknowns():
    tokenizer = build_tokenizer(max_length=16)
    for word in caption_vocabulary():
        assert tokenizer.tokenize(word) == [word + "</w>"]
    ids = tokenizer("a purple dog, 42!")["input_ids"]
    inner = ids[1:-1]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in inner and len(inner) > 5  # unknown words come out letter by letter
    assert len(tokenizer(["word " * 40], truncation=True)["input_ids"][0]) == 16


class _OracleClip:
    """A 'CLIP' whose text embedding of a prompt is the one-hot of the value it names."""

    def encode_text(self, prompts):
        vectors = torch.zeros(len(prompts), 8)
        for row, prompt in enumerate(prompts):
            name, value = next(iter(named_attributes(prompt).items()))
            vectors[row, ATTRIBUTES[name].index(value)] = 1.0
        return vectors


def test_zero_shot_accuracy_is_the_fraction_whose_prompt_is_nearest():
    truth = torch.tensor([0, 1, 2, 3, 5])
    embeddings = torch.nn.functional.one_hot(truth, 8).float()
    labels = {"colour": truth}
    assert zero_shot_accuracy(_OracleClip(), embeddings, labels) == {"colour": 1.0}
    wrong = torch.nn.functional.one_hot(torch.tensor([1, 1, 2, 0, 0]), 8).float()
    assert zero_shot_accuracy(_OracleClip(), wrong, labels)["colour"] == pytest.approx(2 / 5)
    # per value: red (0) read as green, green right, blue right, yellow read as red, cyan read as red
    assert per_value_accuracy(_OracleClip(), wrong, labels)["colour"] == {
        "red": 0.0, "green": 1.0, "blue": 1.0, "yellow": 0.0, "cyan": 0.0,
    }


def test_a_caption_is_the_positive_of_every_image_its_ground_truth_makes_it_true_of():
    data = SyntheticCaptionDataset(48, image_size=32, render_sizes=(32,))
    items = [data[index] for index in range(len(data))]
    captions = [item["caption"] for item in items]
    matches = caption_matches(captions, {name: torch.stack([item[name] for item in items]) for name in ATTRIBUTES})
    for i in range(len(items)):
        truth = vars(data.attributes(i))
        for j, text in enumerate(captions):
            assert bool(matches[i, j]) == all(truth[name] == value for name, value in named_attributes(text).items())
    assert matches.diagonal().all()
    assert 0 < matches.float().mean() < 0.5  # partial captions ("a small object") are true of many
    # a caption naming nothing the images have in common matches only its own image
    ids = {"colour": torch.tensor([0, 1]), "family": torch.tensor([0, 0])}
    assert caption_matches(["a red star", "a green star"], ids).tolist() == [[False, False], [False, False]]
    assert caption_matches(["a red ellipse", "an ellipse"], ids).tolist() == [[True, True], [False, True]]


def test_multi_positive_loss_is_clips_loss_on_distinct_captions_and_spreads_the_target_over_positives():
    tokenizer = build_tokenizer(max_length=16)
    model = build_clip_model(tokenizer.vocab_size, image_size=16, patch_size=8, vision_width=16, vision_layers=1,
                             text_width=16, text_layers=1, heads=2, projection_dim=8, max_length=16)
    captions = ["a red star", "a green ellipse", "a small object", "a striped object", "a blue star"]
    with torch.no_grad():
        output = model(**tokenizer(captions, padding=True, return_tensors="pt"),
                       pixel_values=torch.randn(5, 3, 16, 16), return_loss=True)
    identity = torch.eye(5, dtype=torch.bool)
    assert multi_positive_loss(output.logits_per_image, identity) == pytest.approx(float(output.loss), rel=1e-5)
    # two images, one caption true of both: the image -> text side of row 0 is CE against (1/2, 1/2)
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    matches = torch.tensor([[True, True], [False, True]])
    image_side = -(0.5 * logits[0].log_softmax(0).sum()) - logits[1].log_softmax(0)[1]
    columns = logits.t()
    text_side = -columns[0].log_softmax(0)[0] - 0.5 * columns[1].log_softmax(0).sum()
    expected = 0.5 * (image_side + text_side) / 2
    assert multi_positive_loss(logits, matches) == pytest.approx(float(expected))


def test_label_loss_is_the_cross_entropy_of_scaled_cosine_logits_summed_over_attributes():
    embeddings = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # lengths do not matter: cosine similarity
    heads = {"colour": torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]]), "family": torch.tensor([[0.0, 1.0], [1.0, 1.0]])}
    labels = {"colour": torch.tensor([0, 1]), "family": torch.tensor([1, 1])}
    unit = embeddings / embeddings.norm(dim=1, keepdim=True)
    terms = {}
    for name, weight in heads.items():
        cosines = unit @ (weight / weight.norm(dim=1, keepdim=True)).t()
        terms[name] = float(-(LABEL_LOGIT_SCALE * cosines).log_softmax(1).gather(1, labels[name][:, None]).mean())
    assert label_loss(label_logits(embeddings, heads), labels) == pytest.approx(terms["colour"] + terms["family"])
    assert min(terms.values()) > 0
    # label_weights={family: 3, colour: 0.5}: each attribute's term times its weight
    weights = resolve_label_weights(["colour", "family"], {"family": 3, "colour": 0.5})
    assert label_loss(label_logits(embeddings, heads), labels, weights) == pytest.approx(0.5 * terms["colour"] + 3 * terms["family"])
    assert resolve_label_weights(["family", "colour"], {"family": 3}) == {"family": 3.0, "colour": 1.0}
    for attributes in (["shade"], [], "family"):
        with pytest.raises(ValueError, match="label_attributes must name attributes"):
            resolve_label_weights(attributes)
    for weights in ({"family": 0}, {"size": 2}):
        with pytest.raises(ValueError, match="label_weights must give positive weights"):
            resolve_label_weights(["family", "colour"], weights)
    # an image exactly on its value's vector is classified with the softmax of scale x cosine
    on_axis = {"c": torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)}
    perfect = label_loss(label_logits(torch.tensor([[2.0, 0.0]], dtype=torch.float64), on_axis), {"c": torch.tensor([0])})
    assert float(perfect) == pytest.approx(math.log1p(math.exp(-LABEL_LOGIT_SCALE)), rel=1e-6)


@pytest.mark.parametrize(("positives", "tower"), [("diagonal", "vit"), ("ground_truth", "mobilenet_v2")])
def test_pretraining_lowers_the_contrastive_loss_and_writes_a_folder_the_clip_loader_reads(tmp_path, positives, tower):
    report = pretrain(_config(tmp_path, f"loss.positives={positives}", f"model.vision_tower={tower}"))
    rows = list(csv.DictReader(open(tmp_path / "run" / "csv" / "metrics.csv")))
    losses = [float(row["train/loss"]) for row in rows if row.get("train/loss")]
    assert len(losses) == 40
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8 - 0.2  # ln(32) = 3.47 at the start (diagonal)
    assert report["steps"] == 40 and not report["interrupted"]
    assert set(report["zero_shot_accuracy"]) == set(ATTRIBUTES)
    folder = tmp_path / "clip"
    assert json.loads((folder / "zero_shot.json").read_text())["zero_shot_accuracy"] == report["zero_shot_accuracy"]
    assert (folder / "zero_shot.png").is_file() and (tmp_path / "run" / "clip" / "config.json").is_file()

    clip = load_clip(str(folder))  # the user's path: clip.model=<folder>, offline
    assert clip.preprocess.resize == 32 and clip.preprocess.crop == 32
    text = clip.encode_text(["a green object", "a red star"])
    assert text.shape == (2, 16) and torch.allclose(text.norm(dim=1), torch.ones(2))
    # the reloaded CLIP reads the held-out images as the one in training did
    val = SyntheticCaptionDataset(64, image_size=32, render_sizes=(32,), split="val")
    items = [val[index] for index in range(len(val))]
    with torch.no_grad():
        embeddings = clip.encode_images(torch.stack([item["image"] for item in items]))
    labels = {name: torch.stack([item[name] for item in items]) for name in ATTRIBUTES}
    reloaded = zero_shot_accuracy(clip, embeddings, labels)
    assert reloaded == pytest.approx(report["zero_shot_accuracy"], abs=1 / 64)
    # zero_shot.png labels its 32 images with what the loaded CLIP reads (eval mode: BatchNorm's running statistics)
    pictured = [{name: ATTRIBUTES[name][int(index)] for name, index in (("colour", colour), ("family", family))}
                for colour, family in zip(zero_shot_predictions(clip, embeddings[:32], "colour"),
                                          zero_shot_predictions(clip, embeddings[:32], "family"))]
    assert report["pictured"] == pictured
    # CLIPTraVeLGAN's Siamese space takes the same folder (model.siamese.model=<folder>): its
    # projected image embedding is the one the CLIP above computes
    siamese = ClipImageEmbedder.load(str(folder), output="image_embeds", resize=None)
    projected = siamese(torch.stack([item["image"] for item in items[:4]]))
    assert torch.allclose(projected / projected.norm(dim=1, keepdim=True), embeddings[:4], atol=1e-5)
    # resize: processor (cliptravelgan_synthetic) brings a translator's 64 px outputs to this CLIP's 32 px
    at_clip_size = ClipImageEmbedder.load(str(folder), resize="processor")
    width = 32 if tower == "vit" else 1280  # the pooled features: the ViT's width, MobileNetV2's last 1x1 conv
    assert at_clip_size.preprocess.resize == 32 and at_clip_size(torch.rand(2, 3, 64, 64) * 2 - 1).shape == (2, width)
    # the random-CLIP ablation (model/siamese=clip_random): the same architecture, other (seeded) weights
    random = ClipImageEmbedder.load(str(folder), output="image_embeds", resize=None, random_init=True)
    again = ClipImageEmbedder.load(str(folder), output="image_embeds", resize=None, random_init=True)
    images = torch.stack([item["image"] for item in items[:4]])
    assert random(images).shape == projected.shape and not torch.allclose(random(images), projected, atol=1e-3)
    assert torch.equal(random(images), again(images))


def test_the_report_reads_its_pictured_images_in_eval_mode_and_leaves_the_model_as_it_was(tmp_path):
    # a BatchNorm tower in training mode would read the pictured images with their own batch
    # statistics (and move its running statistics to them): the picture would not show what the saved CLIP reads
    tokenizer = build_tokenizer()
    model = build_clip_model(len(tokenizer), image_size=32, vision_tower="mobilenet_v2", mobilenet_width=0.1,
                             text_width=32, text_layers=1, heads=2, projection_dim=16)
    module = ClipPretraining(model, tokenizer, build_image_processor(32))
    val = SyntheticCaptionDataset(16, image_size=32, render_sizes=(32,), split="val")
    images = torch.stack([val[index]["image"] for index in range(len(val))])
    with torch.no_grad():  # running statistics of red-shifted images: far from the pictured batch's own
        module.train()
        model.get_image_features(pixel_values=module.preprocess((images + 0.8 * torch.tensor([1.0, -1, -1])[:, None, None]).clamp(-1, 1)))
    statistics = {name: value.clone() for name, value in model.state_dict().items() if "running" in name}
    module.zero_shot = {name: 0.5 for name in ATTRIBUTES}
    report = write_report(module, val, tmp_path, {})
    assert module.training
    assert all(torch.equal(model.state_dict()[name], value) for name, value in statistics.items())
    module.eval()
    clip = module.as_clip()
    with torch.no_grad():
        embeddings = clip.encode_images(images)
    expected = [{"colour": ATTRIBUTES["colour"][int(c)], "family": ATTRIBUTES["family"][int(f)]}
                for c, f in zip(zero_shot_predictions(clip, embeddings, "colour"), zero_shot_predictions(clip, embeddings, "family"))]
    assert report["pictured"] == expected
    assert (tmp_path / "zero_shot.png").is_file()


def test_label_steps_train_the_image_tower_on_the_ground_truth_then_captions_and_save_the_clip_alone(tmp_path):
    report = pretrain(_config(
        tmp_path, "model.vision_tower=mobilenet_v2", "loss.label_steps=30", "loss.label_attributes=[colour,size]", "loss.label_weights={colour: 2}",
    ))
    rows = list(csv.DictReader(open(tmp_path / "run" / "csv" / "metrics.csv")))
    # the first 30 steps log the label loss only, the last 10 the caption loss (a row of Lightning's
    # logger may repeat the last label values at the switch, so the rows are told apart by what is new)
    label_rows = [row for row in rows if row.get("train/label_loss") and not row.get("train/loss")]
    assert sorted(int(row["step"]) for row in label_rows) == list(range(30))
    assert sorted({int(row["step"]) for row in rows if row.get("train/loss")}) == list(range(30, 40))
    assert "train/label_accuracy/colour" in rows[0] and "train/label_accuracy/family" not in rows[0]
    assert report["settings"]["loss"]["label_weights"] == {"colour": 2}
    losses = [float(row["train/label_loss"]) for row in label_rows]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    accuracy = [float(row["train/label_accuracy/colour"]) for row in label_rows]
    assert all(0 <= value <= 1 and (value * 32).is_integer() for value in accuracy)  # of a batch of 32
    assert report["steps"] == 40
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "clip" / "model.safetensors"))
    assert not any("label" in key for key in saved) and any(key.startswith("vision_model.") for key in saved)
    assert load_clip(str(tmp_path / "clip")).encode_text(["a star"]).shape == (1, 16)


def test_the_shape_and_colour_recipe_runs_label_steps_on_family_and_colour_then_captions(tmp_path):
    # +clip_recipe=shape_and_colour, shortened: the recipe's tower and label attributes through the real command
    report = pretrain(_config(tmp_path, "+clip_recipe=shape_and_colour", "loss.label_steps=30", "trainer.max_steps=40",
                              "trainer.val_check_interval=20"))
    rows = list(csv.DictReader(open(tmp_path / "run" / "csv" / "metrics.csv")))
    label_rows = [row for row in rows if row.get("train/label_loss") and not row.get("train/loss")]
    assert sorted(int(row["step"]) for row in label_rows) == list(range(30))
    assert {key.rsplit("/", 1)[1] for key in rows[0] if key.startswith("train/label_accuracy/")} == {"family", "colour"}
    assert report["steps"] == 40 and set(report["zero_shot_accuracy"]) == set(ATTRIBUTES)
    config = json.loads((tmp_path / "clip" / "config.json").read_text())
    assert config["model_type"] == "vision-text-dual-encoder" and config["vision_config"]["model_type"] == "mobilenet_v2"


def test_pretraining_refuses_to_replace_a_folder_unless_asked(tmp_path):
    (tmp_path / "clip").mkdir()
    with pytest.raises(PretrainSettingError, match="overwrite=true"):
        pretrain(_config(tmp_path, "overwrite=false"))
    with pytest.raises(PretrainSettingError, match="max_steps"):
        pretrain(_config(tmp_path, "trainer.max_steps=0"))
    with pytest.raises(PretrainSettingError, match="loss.label_steps=40: give 0"):
        pretrain(_config(tmp_path, "overwrite=true", "loss.label_steps=40"))
    with pytest.raises(PretrainSettingError, match=r"loss.label_attributes=\['shade'\]: name attributes"):
        pretrain(_config(tmp_path, "overwrite=true", "loss.label_steps=10", "loss.label_attributes=[shade]"))
    with pytest.raises(PretrainSettingError, match=r"loss.label_weights=\{'family': -1\}: give positive weights"):
        pretrain(_config(tmp_path, "overwrite=true", "loss.label_steps=10", "loss.label_weights={family: -1}"))
    with pytest.raises(PretrainSettingError, match="loss.positives=everything: use one of ground_truth, diagonal"):
        pretrain(_config(tmp_path, "overwrite=true", "loss.positives=everything"))


def test_a_folder_holding_an_image_model_alone_is_refused_with_the_key_that_named_it(tmp_path):
    from transformers import MobileNetV2Config, MobileNetV2Model

    from bicyclegan_pl.clip import ClipNotFoundError
    from bicyclegan_pl.clip.pretraining import build_image_processor

    MobileNetV2Model(MobileNetV2Config(image_size=32, depth_multiplier=0.1)).save_pretrained(tmp_path)
    build_tokenizer(16).save_pretrained(tmp_path)
    build_image_processor(32).save_pretrained(tmp_path)
    with pytest.raises(ClipNotFoundError, match=r"clip.model=.*MobileNetV2Model, not a CLIP-style model"):
        load_clip(str(tmp_path))
