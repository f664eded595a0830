#!/usr/bin/env bash
# A short real-data run: BicycleGAN (default model, widths 32) on the 1000-pair edges2shoes
# subset at 64 px, 6 epochs (3000 iterations, batch 2), then evaluated on its 100 val pairs.
# Run from the repository root:  bash experiments/seed000_ablation/real_data.sh
# About 12 minutes of training and 1 minute of evaluation on 2 CPU cores.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data/edges2shoes_mini}   # photo on the LEFT, edges on the right: BtoA
RUN=outputs/edges2shoes_mini_bicycle

$PYTHON -m bicyclegan_pl.train name=edges2shoes_mini_bicycle \
  data=edges2shoes data.root="$DATA" data.direction=BtoA data.crop_size=64 data.num_workers=1 \
  trainer.max_epochs=6 callbacks.metrics=null logger=csv hydra.run.dir=$RUN

# FID/KID/IS on the random-weight Inception (no pretrained weights offline) and LPIPS off.
# With the weights in paths.weights_dir (README, "Metrics and evaluation") drop the last two
# overrides to get the standard FID/KID/IS and the LPIPS diversity.
$PYTHON -m bicyclegan_pl.evaluate ckpt=$RUN/checkpoints/last.ckpt +data.root="$DATA" \
  metrics/feature_extractor=randinit metrics.lpips=null
