"""The evaluation suite under DDP (2 CPU processes, gloo): every rank computes, nothing
deadlocks, and the result equals one process seeing all the data."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bicyclegan_pl.data.synthetic import SyntheticPairedDataset
from bicyclegan_pl.metrics import ConvFeatures, EvaluationSuite
from tests.metric_fixtures import MeanAbsoluteDistance

WORLD_SIZE = 2


def _data():
    dataset = SyntheticPairedDataset(num_items=8, image_size=32, seed=0, split="val", num_appearances=4)
    masks = torch.stack([dataset[i]["mask"] for i in range(8)])
    targets = torch.stack([dataset.targets(i) for i in range(8)], dim=1)  # (K, N, 3, H, W)
    generator = torch.Generator().manual_seed(1)
    choice = torch.randint(0, 4, (6, 8), generator=generator)  # 6 samples per input, random appearance
    samples = targets[choice, torch.arange(8)]  # (6, N, 3, H, W)
    samples = (samples + 0.05 * torch.randn(samples.shape, generator=generator)).clamp(-1, 1)
    return dataset.palette, {"B": targets[0], "mask": masks}, samples


def _suite(cache_dir):
    return EvaluationSuite(
        feature_extractor=lambda: ConvFeatures(num_features=8, width=8), lpips=MeanAbsoluteDistance,
        kid_subsets=2, is_splits=1, samples_per_input=6, diversity_inputs=8, cache_dir=cache_dir,
    )


def _evaluate(suite, palette, batch, samples, rank, world_size, cache_dir):
    suite.prepare(palette=palette, data_config={"name": "ddp-test"}, num_items=8, rank=rank, world_size=world_size)
    for start in range(rank * 2, 8, 2 * world_size):  # batches of 2 inputs, round-robin over ranks
        part = slice(start, start + 2)
        suite.update({k: v[part] for k, v in batch.items()}, samples[:, part])
    return suite.compute(rank=rank)


def _worker(rank: int, port: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        palette, batch, samples = _data()
        cache = os.path.join(folder, "cache")
        first = _evaluate(_suite(cache), palette, batch, samples, rank, WORLD_SIZE, cache)
        dist.barrier()
        second_suite = _suite(cache)  # real statistics now come from the cache written by rank 0
        second = _evaluate(second_suite, palette, batch, samples, rank, WORLD_SIZE, cache)
        torch.save({"first": first, "second": second, "loaded": second_suite.has_real}, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_suite_under_ddp_equals_one_process_on_all_data(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    palette, batch, samples = _data()
    single = _evaluate(_suite(None), palette, batch, samples, 0, 1, None)
    for rank in range(WORLD_SIZE):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert results["loaded"]
        for run in ("first", "second"):
            assert results[run].keys() == single.keys()
            for key, value in single.items():
                assert results[run][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (rank, run, key)
