#!/usr/bin/env bash
# Seed 002's lambda sweep (CLIPTraVeLGAN, the FID / semantic-preservation trade-off) at CPU scale:
# Monet -> photo on ../shared/data/monet2photo_mini at 64 px, batch 8, widths 32, 4 epochs of 112
# iterations per lambda, with a tiny random CLIP built locally (this machine cannot download
# ViT-L/14). Run from the repository root:
#   bash experiments/cliptravelgan_lambda/run.sh
# About 10 minutes on 2 CPU cores. With a real CLIP and the data on a GPU, the same sweep is
#   python -m bicyclegan_pl.train -m +experiment=cliptravelgan_gta2cityscapes +sweep=cliptravelgan_lambda
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=multirun/cliptravelgan_lambda_cpu
DATA=${DATA:-../shared/data/monet2photo_mini}
mkdir -p $OUT

# the tiny CLIP of the tests (2 layers, 32 px, random weights), saved like a downloaded one
$PYTHON -c "from pathlib import Path; from tests.clip_fixtures import build_tiny_clip; build_tiny_clip(Path('$OUT'))"

# lambda in 0.0003, 0.001, 0.003, 0.01 (conf/sweep/cliptravelgan_lambda.yaml); travel.scale_to_batch
# (128, the default) keeps the paper's lambdas at batch 8. CLIP sees the centre 32 of the output
# resized to 36 (the paper: the centre 224 of 256). FID on random-weight Inception features (no
# pretrained weights offline) after every epoch, over the 100 held-out validation items.
$PYTHON -m bicyclegan_pl.train -m +experiment=cliptravelgan_monet +sweep=cliptravelgan_lambda \
  hydra.sweep.dir=$OUT/runs logger=csv \
  data.root=$DATA data.crop_size=64 data.load_size=64 data.batch_size=8 data.num_workers=1 \
  model.generator.ngf=32 model.discriminator.ndf=32 model.lr_scheduler=null \
  model.siamese.model=$OUT/tiny-clip model.siamese.resize=36 \
  trainer.max_epochs=4 metrics/feature_extractor=randinit metrics.lpips=null callbacks.metrics.every_n_epochs=1

$PYTHON -m bicyclegan_pl.report $OUT/runs --group-by model.loss_weights.travel --out experiments/cliptravelgan_lambda
for job in $OUT/runs/*/; do
  cp "${job}samples/latest.png" "experiments/cliptravelgan_lambda/samples_lambda_$(grep -o 'travel=[0-9.]*' ${job}.hydra/overrides.yaml | cut -d= -f2).png"
done
