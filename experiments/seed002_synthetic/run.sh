#!/usr/bin/env bash
# Seed 002's claims on the unpaired synthetic world, where the right answer is known: does the
# TraVeL loss in a trained CLIP's space keep the input's shape, place and colour (shape_iou,
# colour_kept: from the ground truth), does the same CLIP with random weights (the paper's
# ablation) keep less, and how do the FID-like measures and semantic preservation trade off
# over lambda? 3 seeds each.
# Run from the repository root:  bash experiments/seed002_synthetic/run.sh
#
# 1. the small CLIP of the synthetic world (python -m bicyclegan_pl.clip.pretrain), unless $CLIP exists;
# 2. CLIPTraVeLGAN (+experiment=cliptravelgan_synthetic) with the trained and the random CLIP at
#    lambda 0.001 and 0.01, and the GAN alone (lambda 0: no TraVeL term), seeds 0, 1, 2;
# 3. evaluate every run's last checkpoint in one judge CLIP's space (and by the ground truth);
# 4. report: mean ± std over seeds, each variant against the trained CLIP at lambda 0.001 (Welch).
# FID/KID on a small random conv net's features (fid_conv: no pretrained Inception offline; a proxy).
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-multirun/seed002_synthetic}
CLIP=${CLIP:-$HOME/.cache/bicyclegan_pl/weights/clip-synthetic}

[ -f "$CLIP/config.json" ] || $PYTHON -m bicyclegan_pl.clip.pretrain out_dir="$CLIP"
# seed first: Hydra varies the last override fastest, so every variant has seed 0 before any has seed 1
common=(seed=0,1,2 +experiment=cliptravelgan_synthetic model.siamese.model="$CLIP" metrics/feature_extractor=conv
        logger=csv)

$PYTHON -m bicyclegan_pl.train -m "${common[@]}" model/siamese=clip,clip_random \
  model.loss_weights.travel=0.001,0.01 hydra.sweep.dir=$OUT/travel
$PYTHON -m bicyclegan_pl.train -m "${common[@]}" model.loss_weights.travel=0 hydra.sweep.dir=$OUT/gan_only

# one judge for every run: evaluate in the space of a second small CLIP that no run trained against
# (32 px, 4,000 steps: family 84.5 %), plus the ground-truth measures; writes <job>/eval/last-val
JUDGE=${JUDGE:-$HOME/.cache/bicyclegan_pl/weights/clip-synthetic-judge}
[ -f "$JUDGE/config.json" ] || $PYTHON -m bicyclegan_pl.clip.pretrain out_dir="$JUDGE" data.image_size=32 \
  optimizer.lr=2e-3 loss.positives=ground_truth trainer.max_steps=4000 trainer.val_check_interval=1000
for job in $OUT/travel/[0-9]* $OUT/gan_only/[0-9]*; do
  $PYTHON -m bicyclegan_pl.evaluate ckpt=$job/checkpoints/last.ckpt clip.model="$JUDGE" metrics/feature_extractor=conv
done

$PYTHON -m bicyclegan_pl.report $OUT/travel $OUT/gan_only --group-by model/siamese,model.loss_weights.travel \
  --baseline "model/siamese=clip model.loss_weights.travel=0.001" \
  --compare eval/shape_iou eval/colour_kept eval/fid_conv eval/clip_travel_cosine --out experiments/seed002_synthetic
