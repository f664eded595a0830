#!/usr/bin/env bash
# Seed 003's Table 6 generator column again, on a StyleGAN2 trained 3.5 times further (the depthwise
# FIR filters), and our bound on M's W+ codes: does keeping each w inside the ellipsoid of the
# generator's own codes (model.latent_projection=ellipsoid) stop the out-of-range images that unbounded
# W+ codes gave run_tables.sh's `stylegan2` runs (73-77 % of caption images), and what does it cost?
#   none       the paper: M's W+ codes as they are
#   ellipsoid  each w moved smoothly into the ellipsoid of mapping(z) codes (their mean and covariance,
#              the 99th percentile of their Mahalanobis distances)
#   z_plus     M's codes read as one z per layer, each through G's own mapping network (Z+)
# Each: +experiment=clip2gan_synthetic into +experiment=stylegan2_synthetic's checkpoint, the paper's
# objective, 2 epochs, seeds 0, 1, 2, judged by evaluate_run.sh (prompts, captions, edits).
# Run from the repository root:  bash experiments/clip2gan_synthetic/run_w_plus.sh
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-multirun/clip2gan_w_plus}
WEIGHTS=${WEIGHTS:-$HOME/.cache/bicyclegan_pl/weights}
CLIP=${CLIP:-$WEIGHTS/clip-synthetic}
STYLEGAN=${STYLEGAN:-$WEIGHTS/generators/stylegan2_synthetic.ckpt}
EPOCHS=${EPOCHS:-2}
CAPTIONS=${CAPTIONS:-512}
HERE=experiments/clip2gan_synthetic

[ -f "$CLIP/config.json" ] || $PYTHON -m bicyclegan_pl.clip.pretrain out_dir="$CLIP" trainer.max_steps=4000
[ -f "$STYLEGAN" ] || $PYTHON -m bicyclegan_pl.train +experiment=stylegan2_synthetic

train() {  # projection, seed
  [ -f "$OUT/$1/seed$2/finished" ] && return 0
  OMP_NUM_THREADS=1 $PYTHON -m bicyclegan_pl.train +experiment=clip2gan_synthetic seed=$2 \
    model.clip.name="$CLIP" model.generator.path="$STYLEGAN" model.latent_projection=$1 \
    trainer.max_epochs=$EPOCHS logger=csv callbacks.metrics=null hydra.run.dir=$OUT/$1/seed$2 > /dev/null
  touch "$OUT/$1/seed$2/finished"
}
jobs=()
for projection in none ellipsoid z_plus; do for seed in 0 1 2; do jobs+=("$projection $seed"); done; done
for ((i = 0; i < ${#jobs[@]}; i += 2)); do  # two at a time, one thread each
  train ${jobs[i]} &
  [ -n "${jobs[i + 1]:-}" ] && train ${jobs[i + 1]} &
  wait
done

for job in $OUT/*/seed*; do
  PYTHON=$PYTHON CAPTIONS=$CAPTIONS bash $HERE/evaluate_run.sh $job
done

report() {  # evaluation, metrics compared with the paper's unbounded codes
  $PYTHON -m bicyclegan_pl.report $OUT --eval $1 --group-by model.latent_projection --baseline none \
    --compare "${@:2}" --out $HERE/table6_w_plus_$1
}
report prompts_none eval/text_colour eval/text_family val/rec val/shape_match val/palette_fit
report prompts_modality_gap eval/text_colour eval/text_family
for shift in none modality_gap; do
  report captions_$shift eval/caption_out_of_range eval/caption_fid_conv eval/caption_colour eval/caption_family
done
report edit_colour_gan eval/success_colour@1 eval/mask_iou@0 eval/mask_iou@1
for folder in table6_w_plus_prompts_modality_gap table6_w_plus_captions_none table6_w_plus_captions_modality_gap \
    table6_w_plus_edit_colour_gan; do
  rm -f $HERE/$folder/report.png  # the loss curves are drawn once, in table6_w_plus_prompts_none
done
