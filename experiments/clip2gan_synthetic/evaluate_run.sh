#!/usr/bin/env bash
# The Round 3 evaluations of one CLIP2GAN run folder (run_backbone.sh, run_w_plus.sh), all judged from
# the ground truth: the 14 one-attribute prompts without noise, raw and shifted across CLIP's
# image - text gap; one image per caption of 512 held-out images, raw and shifted (the paper's FID,
# conv features); 64 validation images edited towards "a blue object" in GAN space. Skips a run whose
# eval/done exists.   Usage: evaluate_run.sh <run folder>   (PYTHON, CAPTIONS as in the callers)
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
CAPTIONS=${CAPTIONS:-512}
job=$1
[ -f "$job/eval/done" ] && exit 0
ckpt=$job/checkpoints/last.ckpt
COLOURS="a red object,a green object,a blue object,a yellow object,a magenta object,a cyan object,a black object,a gray object"
FAMILIES="an ellipse,a rectangle,a rounded rectangle,a triangle,a polygon,a star"
for shift in none modality_gap; do
  $PYTHON -m bicyclegan_pl.generate ckpt=$ckpt "prompt=[$COLOURS,$FAMILIES]" num_samples=1 noise=false text_shift=$shift out_dir=$job/eval/prompts_$shift
  $PYTHON -m bicyclegan_pl.generate ckpt=$ckpt captions=$CAPTIONS noise=false text_shift=$shift \
    metrics/feature_extractor@feature_extractor=conv out_dir=$job/eval/captions_$shift > /dev/null
done
$PYTHON -m bicyclegan_pl.edit ckpt=$ckpt val_inputs=64 "prompt=a blue object" space=gan out_dir=$job/eval/edit_colour_gan
touch "$job/eval/done"
