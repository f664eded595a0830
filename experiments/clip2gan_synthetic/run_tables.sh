#!/usr/bin/env bash
# Seed 003's Tables 3 and 6 on the synthetic objects, and the paper's FID for every run of run.sh.
# Run from the repository root after run.sh:  bash experiments/clip2gan_synthetic/run_tables.sh
#
# 1. Table 3: mapping depth 4 and 8 (12 is run.sh's `full`), the paper's objective, seeds 0, 1, 2.
#    Only one CLIP exists here, so the backbone column is not run.
# 2. Table 6: StyleGAN2 as the frozen G (+experiment=stylegan2_synthetic, W+ codes) instead of DCGAN.
# 3. For every run: the paper's generation FID, read as "images generated from the captions of
#    held-out images against those images" (generate captions=512; a seeded random conv net's
#    features: no Inception offline), and how often each image shows the colour and family its
#    caption names; once with the text features as CLIP gives them (the paper) and once shifted
#    across CLIP's image - text gap (text_shift=modality_gap, as run.sh's generate_gap).
# 4. Each new variant also gets run.sh's prompt and edit evaluations.
# Runs that exist are not trained again; evaluations are rewritten.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-multirun/clip2gan_synthetic}
CLIP=${CLIP:-$HOME/.cache/bicyclegan_pl/weights/clip-synthetic}
GAN=${GAN:-$HOME/.cache/bicyclegan_pl/weights/generators/dcgan_synthetic.ckpt}
STYLEGAN=${STYLEGAN:-$HOME/.cache/bicyclegan_pl/weights/generators/stylegan2_synthetic.ckpt}
EPOCHS=${EPOCHS:-2}
CAPTIONS=${CAPTIONS:-512}
HERE=experiments/clip2gan_synthetic

[ -f "$STYLEGAN" ] || $PYTHON -m bicyclegan_pl.train +experiment=stylegan2_synthetic

train() {  # name, seed, overrides... (as run.sh)
  [ -f "$OUT/$1/seed$2/finished" ] && return 0  # written when training ended (last.ckpt is saved every epoch)
  OMP_NUM_THREADS=1 $PYTHON -m bicyclegan_pl.train +experiment=clip2gan_synthetic seed=$2 \
    model.clip.name="$CLIP" model.generator.path="$GAN" trainer.max_epochs=$EPOCHS logger=csv callbacks.metrics=null \
    hydra.run.dir=$OUT/$1/seed$2 "${@:3}" > /dev/null
  touch "$OUT/$1/seed$2/finished"
}
for seed in 0 1 2; do
  train depth_4 $seed model.mapping.depth=4 & train depth_8 $seed model.mapping.depth=8 & wait
done
train stylegan2 0 model.generator.path="$STYLEGAN" model.latent_projection=none &
train stylegan2 1 model.generator.path="$STYLEGAN" model.latent_projection=none & wait
train stylegan2 2 model.generator.path="$STYLEGAN" model.latent_projection=none

COLOURS="a red object,a green object,a blue object,a yellow object,a magenta object,a cyan object,a black object,a gray object"
FAMILIES="an ellipse,a rectangle,a rounded rectangle,a triangle,a polygon,a star"
for job in $OUT/depth_*/seed* $OUT/stylegan2/seed*; do
  ckpt=$job/checkpoints/last.ckpt
  $PYTHON -m bicyclegan_pl.generate ckpt=$ckpt "prompt=[$COLOURS,$FAMILIES]" num_samples=8 out_dir=$job/eval/generate
  $PYTHON -m bicyclegan_pl.generate ckpt=$ckpt "prompt=[$COLOURS,$FAMILIES]" num_samples=1 noise=false text_shift=modality_gap out_dir=$job/eval/generate_gap
  $PYTHON -m bicyclegan_pl.edit ckpt=$ckpt val_inputs=64 "prompt=a blue object" space=gan out_dir=$job/eval/edit_colour_gan
done
for job in $OUT/*/seed*; do
  ckpt=$job/checkpoints/last.ckpt
  for shift in none modality_gap; do
    $PYTHON -m bicyclegan_pl.generate ckpt=$ckpt captions=$CAPTIONS noise=false text_shift=$shift \
      metrics/feature_extractor@feature_extractor=conv out_dir=$job/eval/captions_$shift > /dev/null
  done
done

report() {  # evaluation, folders, out, group-by keys, baseline group, metrics compared with it
  $PYTHON -m bicyclegan_pl.report $2 --eval $1 --group-by $4 --baseline "$5" --compare "${@:6}" --out $HERE/$3
}
DEPTH=(model.mapping.depth "(default)")                             # Table 3: depth 12 is the default
OBJECTIVE=(model.loss_weights.adv,model.loss_weights.div "(default)")  # Table 4
GENERATOR=(model.generator.path "$GAN")  # Table 6: DCGAN is the baseline (one key: groups are named by its value)
CAPTION_METRICS=(eval/caption_fid_conv eval/caption_kid_mean_conv eval/caption_colour eval/caption_family)
for shift in none modality_gap; do
  report captions_$shift "$OUT/full $OUT/depth_4 $OUT/depth_8" table3_captions_$shift "${DEPTH[@]}" "${CAPTION_METRICS[@]}"
  report captions_$shift "$OUT/full $OUT/no_adv $OUT/no_div" table4_captions_$shift "${OBJECTIVE[@]}" "${CAPTION_METRICS[@]}"
  report captions_$shift "$OUT/full $OUT/stylegan2" table6_captions_$shift "${GENERATOR[@]}" "${CAPTION_METRICS[@]}"
done
report generate_gap "$OUT/full $OUT/depth_4 $OUT/depth_8" table3_generate_gap "${DEPTH[@]}" eval/text_colour eval/text_family
report generate_gap "$OUT/full $OUT/stylegan2" table6_generate_gap "${GENERATOR[@]}" eval/text_colour eval/text_family
report edit_colour_gan "$OUT/full $OUT/stylegan2" table6_edit_colour_gan "${GENERATOR[@]}" eval/success_colour@1 eval/kept_family@1 eval/mask_iou@1
# the loss curves of each table's runs are drawn once, in table<N>_captions_none/report.png
for folder in table3_captions_modality_gap table3_generate_gap table4_captions_modality_gap \
    table6_captions_modality_gap table6_edit_colour_gan table6_generate_gap; do
  rm -f $HERE/$folder/report.png
done
