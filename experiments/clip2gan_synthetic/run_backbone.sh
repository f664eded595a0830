#!/usr/bin/env bash
# Seed 003's Table 3, CLIP-backbone column, on the synthetic objects: does M's text control depend on
# the CLIP it maps from? Two small CLIPs of this world, both trained offline here:
#   vit        python -m bicyclegan_pl.clip.pretrain trainer.max_steps=4000 (captions only; run.sh's CLIP)
#   mobilenet  python -m bicyclegan_pl.clip.pretrain +clip_recipe=shape_and_colour (MobileNetV2 tower,
#              colour and family labels first, then captions; zero-shot colour 100 %, family 95 %)
# Each: +experiment=clip2gan_synthetic with the paper's objective, 2 epochs, seeds 0, 1, 2 (as run.sh's
# `full`), then evaluate_run.sh's evaluations and 8 noisy samples per prompt, and clip_space.py's description of each CLIP.
# Run from the repository root:  bash experiments/clip2gan_synthetic/run_backbone.sh
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-multirun/clip2gan_backbone}
WEIGHTS=${WEIGHTS:-$HOME/.cache/bicyclegan_pl/weights}
GAN=${GAN:-$WEIGHTS/generators/dcgan_synthetic.ckpt}
EPOCHS=${EPOCHS:-2}
CAPTIONS=${CAPTIONS:-512}
HERE=experiments/clip2gan_synthetic
declare -A CLIPS=([vit]=${CLIP_VIT:-$WEIGHTS/clip-synthetic} [mobilenet]=${CLIP_MOBILENET:-$WEIGHTS/clip-shape-and-colour})

[ -f "${CLIPS[vit]}/config.json" ] || $PYTHON -m bicyclegan_pl.clip.pretrain out_dir="${CLIPS[vit]}" trainer.max_steps=4000
[ -f "${CLIPS[mobilenet]}/config.json" ] || $PYTHON -m bicyclegan_pl.clip.pretrain +clip_recipe=shape_and_colour out_dir="${CLIPS[mobilenet]}"
[ -f "$GAN" ] || $PYTHON -m bicyclegan_pl.train +experiment=dcgan_synthetic

train() {  # backbone, seed (as run.sh's `full`)
  [ -f "$OUT/$1/seed$2/finished" ] && return 0
  OMP_NUM_THREADS=1 $PYTHON -m bicyclegan_pl.train +experiment=clip2gan_synthetic seed=$2 \
    model.clip.name="${CLIPS[$1]}" model.generator.path="$GAN" trainer.max_epochs=$EPOCHS logger=csv callbacks.metrics=null \
    hydra.run.dir=$OUT/$1/seed$2 > /dev/null
  touch "$OUT/$1/seed$2/finished"
}
for seed in 0 1 2; do
  train vit $seed & train mobilenet $seed & wait
done

COLOURS="a red object,a green object,a blue object,a yellow object,a magenta object,a cyan object,a black object,a gray object"
FAMILIES="an ellipse,a rectangle,a rounded rectangle,a triangle,a polygon,a star"
for job in $OUT/*/seed*; do
  [ -f "$job/eval/done" ] || $PYTHON -m bicyclegan_pl.generate ckpt=$job/checkpoints/last.ckpt "prompt=[$COLOURS,$FAMILIES]" \
    num_samples=8 out_dir=$job/eval/prompts_noisy  # 8 noisy samples per prompt: diversity
  PYTHON=$PYTHON CAPTIONS=$CAPTIONS bash $HERE/evaluate_run.sh $job
done

report() {  # evaluation, metrics compared with the ViT CLIP's runs (groups are named by the CLIP's path)
  $PYTHON -m bicyclegan_pl.report $OUT --eval $1 --group-by model.clip.name --baseline "${CLIPS[vit]}" \
    --compare "${@:2}" --out $HERE/table3_backbone_$1
}
report prompts_none eval/text_colour eval/text_family val/rec
report prompts_modality_gap eval/text_colour eval/text_family
report prompts_noisy eval/text_colour eval/text_family eval/diversity_l1
for shift in none modality_gap; do
  report captions_$shift eval/caption_fid_conv eval/caption_colour eval/caption_family
done
report edit_colour_gan eval/success_colour@0 eval/success_colour@1 eval/kept_family@0 eval/mask_iou@0
for folder in table3_backbone_prompts_modality_gap table3_backbone_prompts_noisy table3_backbone_captions_none \
    table3_backbone_captions_modality_gap table3_backbone_edit_colour_gan; do
  rm -f $HERE/$folder/report.png  # the loss curves are drawn once, in table3_backbone_prompts_none
done
$PYTHON $HERE/clip_space.py "${CLIPS[vit]}" "${CLIPS[mobilenet]}" --out $HERE/clip_space.json
