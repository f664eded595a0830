"""A small CLIP for the synthetic world, built and trained through transformers' own classes.

The result is a folder written by ``save_pretrained`` (``CLIPModel``, ``CLIPTokenizer``,
``CLIPImageProcessor``), so it loads with ``clip.model=<folder>`` through exactly the code path a
downloaded CLIP takes (``clip.loading``). Its tokenizer is a CLIP BPE trained with the
``tokenizers`` library on the captions' words plus every single character, so caption words are
one token each and any other text still tokenizes (spelled out).

:class:`ClipPretraining` is a plain Lightning module with automatic optimisation: one optimiser
and one loss (CLIP's symmetric contrastive loss) have no training order to configure, so the
schedule engine of the translation systems has nothing to add.

Positives. CLIP's loss treats every other pair of the batch as a negative. Here many captions are
true of several images of a batch ("a red object" of every red object), so that loss would push a
red image away from a caption that describes it. ``positives="ground_truth"`` (conf/clip_pretrain.yaml's
choice) makes a caption the positive of every image whose ground truth it matches, with the target
spread evenly over them (multi-positive contrastive learning, as UniCL and SupCon do with labels);
``"diagonal"`` (this class's default) is transformers' ``return_loss=True`` loss, image i with
caption i only. The two are the same loss when every caption is true of its own image only.

Label steps (LiT's order: an image tower trained on labels first, then the text side aligned to it
contrastively). ``label_steps=N`` trains the image tower alone for the first N steps: its
L2-normalised embedding is classified into the values of ``label_attributes`` (default: the shape
family) by cosine-similarity heads, with the ground truth as labels (the heads are discarded; the
saved CLIP is the model only); the remaining steps are CLIP's contrastive loss on captions.
``label_weights`` weights an attribute's cross-entropy (1 unless given): with family and colour
together, colour is learned within 200 steps and then slows family down, which a larger family
weight offsets.
Measured reason (README, "A text–image world"): the image towers here learn shape family several
times faster from labels than from captions, where the family is one word of some captions and
colour already separates most pairs; and faster from the family's labels alone than from all five
attributes' at once.
"""
from __future__ import annotations

import string
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from bicyclegan_pl.clip.loading import ClipModel, preprocess_from, projected_features
from bicyclegan_pl.clip.zero_shot import per_value_accuracy, zero_shot_accuracy
from bicyclegan_pl.data.captions import ATTRIBUTES, caption_vocabulary, named_attributes

POSITIVES = ("ground_truth", "diagonal")

#: OpenAI CLIP's normalisation, kept so the small CLIP's folder reads like a real one
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_CHARACTERS = string.ascii_lowercase + string.digits + ".,!?'-"


def build_tokenizer(max_length: int = 32):
    """A ``CLIPTokenizer`` whose BPE merges spell every caption word as one token."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|startoftext|>", "<|endoftext|>"], end_of_word_suffix="</w>",
        initial_alphabet=list(_CHARACTERS), show_progress=False,
    )
    # every caption word many times (so each becomes a token), every character once as a word of
    # its own (so "x</w>" exists and no text falls outside the vocabulary)
    corpus = [" ".join(caption_vocabulary())] * 20 + [" ".join(_CHARACTERS)]
    bpe.train_from_iterator(corpus, trainer)
    with tempfile.TemporaryDirectory(prefix="clip_tokenizer_") as folder:
        vocab, merges = bpe.model.save(folder)
        return CLIPTokenizer(vocab, merges, model_max_length=max_length)


def build_image_processor(image_size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
    )


VISION_TOWERS = ("vit", "mobilenet_v2")


def build_clip_model(
    vocab_size: int,
    image_size: int = 64,
    vision_tower: str = "vit",
    patch_size: int = 8,
    vision_width: int = 128,
    vision_layers: int = 4,
    mobilenet_width: float = 0.35,
    text_width: int = 128,
    text_layers: int = 3,
    heads: int = 4,
    projection_dim: int = 64,
    max_length: int = 32,
    seed: int = 0,
):
    """A randomly initialised (seeded) CLIP: a text transformer and, as its image tower,
    ``vision_tower="vit"``: a ViT (``CLIPModel``, the architecture of every hub CLIP transformers
    loads; ``patch_size``, ``vision_width``, ``vision_layers``, ``heads``), or ``"mobilenet_v2"``: a
    MobileNetV2 with channel multiplier ``mobilenet_width`` (``VisionTextDualEncoderModel``,
    transformers' CLIP-style dual encoder, like OpenAI's ResNet CLIPs a convolutional tower). Both
    train with CLIP's loss and load through ``load_clip``."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig

    if vision_tower not in VISION_TOWERS:
        raise ValueError(f"vision_tower must be one of {VISION_TOWERS}, got {vision_tower!r}")
    text_config = dict(
        vocab_size=vocab_size, hidden_size=text_width, intermediate_size=4 * text_width,
        num_hidden_layers=text_layers, num_attention_heads=heads, max_position_embeddings=max_length,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if vision_tower == "mobilenet_v2":
            return _mobilenet_clip(CLIPTextConfig(**text_config), image_size, mobilenet_width, projection_dim)
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        config = CLIPConfig(
            text_config=text_config,
            vision_config=dict(
                image_size=image_size, patch_size=patch_size, hidden_size=vision_width,
                intermediate_size=4 * vision_width, num_hidden_layers=vision_layers, num_attention_heads=heads,
            ),
            projection_dim=projection_dim,
        )
        return CLIPModel(config)


def _mobilenet_clip(text_config, image_size: int, width: float, projection_dim: int):
    from transformers import MobileNetV2Config, MobileNetV2Model, VisionTextDualEncoderConfig, VisionTextDualEncoderModel

    vision_config = MobileNetV2Config(image_size=image_size, depth_multiplier=width, tf_padding=False)
    # the dual encoder sizes its projection from vision_config.hidden_size, which a MobileNetV2 config
    # lacks: its pooled output is the last 1x1 convolution's width (saved in config.json with the rest)
    vision_config.hidden_size = MobileNetV2Model(vision_config).conv_1x1.convolution.out_channels
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vision_config, text_config, projection_dim=projection_dim)
    return VisionTextDualEncoderModel(config)


def caption_matches(captions: list[str], attribute_ids: Mapping[str, Tensor]) -> Tensor:
    """(B images, C captions) bool: caption j names only attribute values image i has
    (``attribute_ids``: attribute -> (B,) value ids of the images, as ``SyntheticCaptionDataset``)."""
    first = attribute_ids[next(iter(ATTRIBUTES))]
    matches = torch.ones(len(first), len(captions), dtype=torch.bool, device=first.device)
    for j, text in enumerate(captions):
        for name, value in named_attributes(text).items():
            matches[:, j] &= attribute_ids[name] == ATTRIBUTES[name].index(value)
    return matches


def multi_positive_loss(logits_per_image: Tensor, matches: Tensor) -> Tensor:
    """CLIP's symmetric cross-entropy with the target of each row spread over its positives
    (``matches``, images x captions); equal to CLIP's loss when ``matches`` is the identity."""
    positives = matches.to(logits_per_image.dtype)

    def spread(logits: Tensor, positive: Tensor) -> Tensor:
        return -(positive / positive.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()

    return 0.5 * (spread(logits_per_image, positives) + spread(logits_per_image.t(), positives.t()))


#: the scale of the label steps' cosine-similarity logits (a fixed temperature of 1/16)
LABEL_LOGIT_SCALE = 16.0


def label_logits(image_embeddings: Tensor, heads: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """attribute -> (B, values) logits: scaled cosine similarity of the L2-normalised image embeddings
    (B, D) with each attribute's L2-normalised value vectors (``heads``: attribute -> (values, D))."""
    embeddings = F.normalize(image_embeddings, dim=-1)
    return {name: LABEL_LOGIT_SCALE * embeddings @ F.normalize(weight, dim=-1).t() for name, weight in heads.items()}


def label_loss(logits: Mapping[str, Tensor], labels: Mapping[str, Tensor], weights: Mapping[str, float] | None = None) -> Tensor:
    """Sum over attributes of the cross-entropy of :func:`label_logits` against the value ids ``labels``,
    each times its ``weights`` entry (1 when ``weights`` is None)."""
    weights = weights or {}
    return sum(weights.get(name, 1.0) * F.cross_entropy(values, labels[name]) for name, values in logits.items())


def resolve_label_weights(attributes: Sequence[str], weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """attribute -> loss weight of the label steps: each of ``attributes`` with its ``weights`` entry (1
    when it has none). Raises ValueError for no attribute, one the data does not have, or a weight
    that is not positive or belongs to an attribute not listed."""
    if isinstance(attributes, str) or not attributes or any(name not in ATTRIBUTES for name in attributes):
        raise ValueError(f"label_attributes must name attributes of the data ({', '.join(ATTRIBUTES)}), got {attributes!r}")
    weights = dict(weights or {})
    if any(name not in attributes for name in weights) or any(not float(weight) > 0 for weight in weights.values()):
        raise ValueError(f"label_weights must give positive weights to label_attributes {list(attributes)}, got {weights}")
    return {name: float(weights.get(name, 1.0)) for name in attributes}



class ClipPretraining(L.LightningModule):
    """Contrastive training of a CLIP on image–caption batches (after ``label_steps`` steps of the
    image tower on ground-truth labels); zero-shot accuracy per attribute (``zero_shot/<attribute>``)
    on the validation images after each validation."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        image_processor: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 100,
        total_steps: int = 2000,
        positives: str = "diagonal",
        label_steps: int = 0,
        label_attributes: Sequence[str] = ("family",),
        label_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if positives not in POSITIVES:
            raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}")
        if not 0 <= label_steps < total_steps:
            raise ValueError(f"label_steps must be in [0, total_steps={total_steps}), got {label_steps}")
        self.positives, self.label_steps = positives, label_steps
        self.label_weights = resolve_label_weights(label_attributes, label_weights) if label_steps else {}
        # the label steps' classifier of each attribute: one vector per value (not part of the saved CLIP);
        # drawn from a forked generator, so the model's and the data's random streams do not depend on them
        dim = model.config.projection_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.label_heads = torch.nn.ParameterDict(
                {name: torch.nn.Parameter(torch.randn(len(ATTRIBUTES[name]), dim)) for name in self.label_weights}
            )
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.preprocess = preprocess_from(image_processor)
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self._validation: dict[str, list[Tensor]] = {}
        #: the zero-shot accuracies of the last validation: attribute -> fraction correct, and per value
        self.zero_shot: dict[str, float] = {}
        self.zero_shot_per_value: dict[str, dict[str, float]] = {}

    def as_clip(self) -> ClipModel:
        """The model in training, behind the interface every CLIP user here takes."""
        return ClipModel(model=self.model, tokenizer=self.tokenizer, preprocess=self.preprocess, name="in training")

    def _tokens(self, captions: list[str]) -> dict[str, Tensor]:
        tokens = self.tokenizer(captions, padding=True, truncation=True, return_tensors="pt")
        return {key: value.to(self.device) for key, value in tokens.items()}

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        if self.global_step < self.label_steps:
            features = self.model.get_image_features(pixel_values=self.preprocess(batch["image"]))
            logits = label_logits(projected_features(features), self.label_heads)
            loss = label_loss(logits, batch, self.label_weights)
            self.log("train/label_loss", loss, prog_bar=True)
            for name, values in logits.items():
                self.log(f"train/label_accuracy/{name}", (values.argmax(1) == batch[name]).float().mean())
            return loss
        captions = list(batch["caption"])
        output = self.model(**self._tokens(captions), pixel_values=self.preprocess(batch["image"]),
                            return_loss=self.positives == "diagonal")
        if self.positives == "diagonal":
            loss = output.loss
        else:
            loss = multi_positive_loss(output.logits_per_image, caption_matches(captions, batch))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/logit_scale", self.model.logit_scale.exp().detach())
        return loss

    def on_validation_epoch_start(self) -> None:
        self._validation = {"images": [], **{name: [] for name in ATTRIBUTES}}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._validation["images"].append(self.as_clip().encode_images(batch["image"]).cpu())
        for name in ATTRIBUTES:
            self._validation[name].append(batch[name].cpu())

    def on_validation_epoch_end(self) -> None:
        embeddings = torch.cat(self._validation.pop("images"))
        labels = {name: torch.cat(values) for name, values in self._validation.items()}
        self.zero_shot = zero_shot_accuracy(self.as_clip(), embeddings, labels)
        self.zero_shot_per_value = per_value_accuracy(self.as_clip(), embeddings, labels)
        for name, accuracy in self.zero_shot.items():
            self.log(f"zero_shot/{name}", accuracy, prog_bar=name in ("colour", "family"))

    def configure_optimizers(self):
        from transformers import get_cosine_schedule_with_warmup

        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        no_decay += list(self.label_heads.parameters())
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr, betas=(0.9, 0.98), eps=1e-6,  # CLIP's Adam settings
        )
        scheduler = get_cosine_schedule_with_warmup(optimizer, self.warmup_steps, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def save(self, folder: str | Path) -> Path:
        """Write model, tokenizer and image processor with ``save_pretrained`` (what ``load_clip`` reads)."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)
        return folder
