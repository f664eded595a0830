#!/usr/bin/env bash
# Seed 000's order and loss-accumulation ablations at CPU scale on the synthetic data:
# train (3 seeds per variant, 1600 iterations each), evaluate every final checkpoint on the
# same 256 validation inputs, and aggregate. Run from the repository root:
#   bash experiments/seed000_ablation/run.sh
# About 30 minutes of training on 2 CPU cores (two sweeps side by side, one thread each,
# ~150 s per run) and 15 minutes of evaluation (~75 s per checkpoint, two at a time).
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# 1. train: the two sweeps in parallel, one core each (CSV logs; no metrics during training)
$PYTHON -m bicyclegan_pl.train -m +sweep=seed000_order_cpu hydra.sweep.dir=multirun/seed000_order_cpu callbacks.metrics=null & order=$!
$PYTHON -m bicyclegan_pl.train -m +sweep=seed000_accum_cpu hydra.sweep.dir=multirun/seed000_accum_cpu callbacks.metrics=null & accum=$!
wait $order; wait $accum   # (a failed job stops the script)

# 2. evaluate last.ckpt of every job on the same 256 inputs (seed 0), 20 z each.
#    No Inception/AlexNet weights on this machine: FID/KID/IS use the random-weight Inception
#    (fid_randinit, ...); LPIPS is off; the exact ground-truth metrics need no weights.
evaluate_sweep() {
  for job in "multirun/$1"/*/; do
    $PYTHON -m bicyclegan_pl.evaluate ckpt="${job}checkpoints/last.ckpt" \
      data=synthetic data.crop_size=32 data.val_size=256 \
      metrics/feature_extractor=randinit metrics.lpips=null
  done
}
evaluate_sweep seed000_order_cpu & order=$!
evaluate_sweep seed000_accum_cpu & accum=$!
wait $order; wait $accum

# 3. aggregate: mean ± std over the 3 seeds of each variant, and mean loss curves
$PYTHON -m bicyclegan_pl.report multirun/seed000_order_cpu --group-by +experiment --smooth 5 --out experiments/seed000_ablation/order
$PYTHON -m bicyclegan_pl.report multirun/seed000_accum_cpu --group-by +experiment --smooth 5 --out experiments/seed000_ablation/accum
