#!/usr/bin/env python
"""What a pre-emption costs, and what the periodic last.ckpt costs, for a training recipe.

Usage (from the repository root)::

    python benchmarks/checkpoint_cost.py                                  # bicycle_reference, 256 px, batch 2
    python benchmarks/checkpoint_cost.py --override data.crop_size=128 --override data.batch_size=8
    python benchmarks/checkpoint_cost.py --items 49825                    # images per epoch (edges2shoes train)

Builds the recipe's module from the Hydra config (random weights, random batches of the recipe's
size), trains ``--iterations`` timed iterations through Lightning, then writes the checkpoint the
`LastCheckpoint` callback writes (nets, Adam moments, loop state) ``--repeats`` times with
`AtomicCheckpointIO` and, interleaved, with Lightning's own `TorchCheckpointIO`. It prints the
checkpoint size, the seconds per iteration and per save, the overhead of saving every N
iterations, and the work a pre-emption loses at worst: before (last.ckpt only at the end of
training: everything since the start, at least an epoch) and after (N iterations, or
``every_n_minutes``, whichever is less; nothing but the current iteration on a signal).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="bicycle_reference")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--items", type=int, default=49825, help="training images per epoch (edges2shoes: 49825)")
    parser.add_argument("--iterations", type=int, default=6, help="timed training iterations (after 2 warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="saves per writer")
    parser.add_argument("--every-n-iterations", type=int, default=1000)
    parser.add_argument("--every-n-minutes", type=float, default=15.0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    from omegaconf import OmegaConf, open_dict
    from torch.utils.data import DataLoader, TensorDataset

    from bicyclegan_pl.checkpoint_io import AtomicCheckpointIO
    from bicyclegan_pl.config import register_resolvers

    register_resolvers()
    overrides = [f"+experiment={args.experiment}", f"data.crop_size={args.crop_size}", f"data.batch_size={args.batch_size}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *args.override], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = tempfile.mkdtemp()
        cfg.hydra.runtime.cwd = str(REPO)
    HydraConfig.instance().set_config(cfg)
    model = instantiate(cfg.model, _convert_="all")
    model.run_config = OmegaConf.to_container(cfg.model, resolve=True)

    count = (args.iterations + 2) * args.batch_size
    size, input_nc = args.crop_size, int(cfg.data.input_nc)
    dataset = TensorDataset(torch.rand(count, input_nc, size, size) * 2 - 1, torch.rand(count, 3, size, size) * 2 - 1)
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=lambda items: {
        "A": torch.stack([a for a, _ in items]), "B": torch.stack([b for _, b in items])})

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *rest):
            if pl_module.iteration == 2:
                self.start = time.perf_counter()
            self.end = time.perf_counter()

    clock = Clock()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    trainer.fit(model, train_dataloaders=loader)
    seconds_per_iteration = (clock.end - clock.start) / args.iterations

    folder = Path(tempfile.mkdtemp())
    times: dict[str, list[float]] = {"atomic (ours)": [], "lightning TorchCheckpointIO": []}
    writers = {"atomic (ours)": AtomicCheckpointIO(), "lightning TorchCheckpointIO": TorchCheckpointIO()}
    checkpoint = trainer._checkpoint_connector.dump_checkpoint()
    for _ in range(args.repeats):
        for name, writer in writers.items():
            start = time.perf_counter()
            writer.save_checkpoint(checkpoint, folder / "last.ckpt")
            times[name].append(time.perf_counter() - start)
    size_mb = (folder / "last.ckpt").stat().st_size / 2**20

    iterations_per_epoch = args.items // args.batch_size
    save = statistics.median(times["atomic (ours)"])
    by_time = args.every_n_minutes * 60 / seconds_per_iteration if args.every_n_minutes else float("inf")
    lost_after = min(args.every_n_iterations or float("inf"), by_time, iterations_per_epoch)
    print(f"recipe: +experiment={args.experiment} {' '.join(overrides[1:] + args.override)}")
    print(f"checkpoint: {size_mb:.1f} MiB")
    for name, values in times.items():
        print(f"save, {name}: median {statistics.median(values):.3f} s (of {', '.join(f'{v:.3f}' for v in values)})")
    print(f"training: {seconds_per_iteration:.3f} s/iteration; epoch = {iterations_per_epoch} iterations "
          f"= {iterations_per_epoch * seconds_per_iteration / 3600:.2f} h")
    print(f"overhead of a save every {args.every_n_iterations} iterations: "
          f"{100 * save / (args.every_n_iterations * seconds_per_iteration):.3f} %")
    print(f"worst-case work lost by a kill, before: the whole run (>= 1 epoch = {iterations_per_epoch} iterations, "
          f"{iterations_per_epoch * seconds_per_iteration / 60:.0f} min)")
    print(f"worst-case work lost by a kill, after: {lost_after:.0f} iterations "
          f"({lost_after * seconds_per_iteration / 60:.1f} min); by SIGTERM/SIGUSR1: the current iteration "
          f"({seconds_per_iteration:.2f} s) + one save ({save:.2f} s)")


if __name__ == "__main__":
    main()
