"""A tiny randomly initialised CLIP written to a folder the way a user's downloaded CLIP is
(config, safetensors weights, tokenizer files, preprocessor config), so tests and benchmarks
load it through ``bicyclegan_pl.clip.load_clip`` like the real one, offline."""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch

TINY_CLIP_RESOLUTION = 32


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    source = folder / "tokenizer_source"
    source.mkdir(parents=True, exist_ok=True)
    # a character-level BPE vocabulary: every word is spelled out, so different prompts differ
    symbols = list(string.ascii_lowercase + string.digits + ".,!?'-")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in symbols + [symbol + "</w>" for symbol in symbols]:
        vocab[token] = len(vocab)
    (source / "vocab.json").write_text(json.dumps(vocab))
    (source / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(source)

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        vision_config=dict(
            image_size=TINY_CLIP_RESOLUTION, patch_size=8, hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2,
        ),
        projection_dim=16,
    )
    target = folder / "tiny-clip"
    CLIPModel(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    CLIPImageProcessor(
        size={"shortest_edge": TINY_CLIP_RESOLUTION},
        crop_size={"height": TINY_CLIP_RESOLUTION, "width": TINY_CLIP_RESOLUTION},
        image_mean=[0.5, 0.4, 0.3],  # not CLIP's, so the test sees they are read from the folder
        image_std=[0.25, 0.2, 0.3],
    ).save_pretrained(target)
    return target
