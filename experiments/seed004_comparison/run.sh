#!/usr/bin/env bash
# Seed 004's comparison on CPU: CycleGAN against Gatys et al. and Ghiasi et al. on two tasks of the
# local monet2photo subset, measured by `python -m bicyclegan_pl.compare` instead of by eye.
#   colorization:   grayscale photo -> colour photo (data=colorization on the 1,000 photos; 100 held out);
#                   each content's true colours are known, so the table has L1 / PSNR to the truth
#   photo -> Monet: the CycleGAN of monet2photo run B -> A (100 held-out photos, 30 held-out paintings)
# Run from the repository root:  bash experiments/seed004_comparison/run.sh
#
# 1. CycleGAN (seed 004's architecture at CPU size: 64 px, widths 32, 6 residual blocks, batch 4) and
#    Ghiasi's network (tiny style predictor, widths 16, batch 8, Adam 1e-3) for seeds 0, 1, 2 on each task,
#    two jobs at a time on one thread each;
# 2. compare per task and seed on the first 50 held-out content images: all three methods for seed 0,
#    the trained two for seeds 1 and 2 (Gatys is deterministic from the content start: one run);
# 3. summarise.py: mean ± std over seeds, and each difference with its 95 % interval.
# No pretrained VGG, Inception or AlexNet file exists on the machine this ran on: by default the VGG of
# the losses and of the Gram distance, and the FID Inception, are SEEDED RANDOM networks, LPIPS is off.
# The random loss VGGs are fed the papers' input (PREPROCESSING=caffe: BGR 0-255 minus the mean), and
# Gatys's is given the paper's normalisation (every filter's mean activation one, over the first 64
# photos at 64 px: GATYS_NORMALIZE=null turns it off), so that the papers' loss weights meet features of
# the scale they were set on; PREPROCESSING=torchvision GATYS_NORMALIZE=null is the study's first round.
# With the files in paths.weights_dir:
#   LOSS_VGG_GATYS=gatys GATYS_NORMALIZE=null LOSS_VGG_GHIASI=caffe VGG=imagenet PREPROCESSING=auto \
#   FEATURES=inception LPIPS=alex bash .../run.sh
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-multirun/seed004_comparison}
DATA=${DATA:-../shared/data/monet2photo_mini}
VGG=${VGG:-null}                        # the judge's VGG-19 (Gram distance)
LOSS_VGG_GATYS=${LOSS_VGG_GATYS:-null}  # Gatys's loss network
LOSS_VGG_GHIASI=${LOSS_VGG_GHIASI:-null}
PREPROCESSING=${PREPROCESSING:-caffe}   # how the loss networks are fed
GATYS_NORMALIZE=${GATYS_NORMALIZE:-$DATA/trainB}  # the images of Gatys's normalisation (null: none)
FEATURES=${FEATURES:-randinit}
LPIPS=${LPIPS:-null}
CYCLEGAN_EPOCHS=${CYCLEGAN_EPOCHS:-2}
GHIASI_EPOCHS=${GHIASI_EPOCHS:-3}
SIZE=(data.crop_size=64 data.load_size=72 data.num_workers=1)
CYCLEGAN=(model.generator.ngf=32 model.generator.n_blocks=6 model.discriminator.ndf=32 data.batch_size=4
  trainer.max_epochs=$CYCLEGAN_EPOCHS)
GHIASI=(model.style_predictor=tiny model.tiny_channels=16 model.transfer_channels=16 model.style_image_size=null
  model.style_augmentation.random_size=null model.optimizer.lr=0.001 model.loss_network.weights=$LOSS_VGG_GHIASI
  model.loss_network.preprocessing=$PREPROCESSING data.batch_size=8
  trainer.max_epochs=$GHIASI_EPOCHS)

train() {  # run folder, overrides...
  [ -f "$OUT/$1/checkpoints/last.ckpt" ] && return 0
  mkdir -p $OUT/$1
  OMP_NUM_THREADS=1 $PYTHON -m bicyclegan_pl.train "${@:2}" "${SIZE[@]}" logger=csv callbacks.metrics=null \
    hydra.run.dir=$OUT/$1 > $OUT/$1/train.log 2>&1
}
for seed in 0 1 2; do
  train colorization/cyclegan/seed$seed +experiment=cyclegan_colorization data.root=$DATA/trainB seed=$seed "${CYCLEGAN[@]}" &
  train colorization/ghiasi/seed$seed +experiment=arbitrary_style_colorization data.root=$DATA/trainB seed=$seed "${GHIASI[@]}" &
  wait
  train monet/cyclegan/seed$seed +experiment=cyclegan_monet data.root=$DATA seed=$seed "${CYCLEGAN[@]}" &
  train monet/ghiasi/seed$seed +experiment=arbitrary_style_monet monet_root=$DATA data.val_a=null data.val_b=null seed=$seed "${GHIASI[@]}" &
  wait
done

compare() {  # task, seed, direction, methods
  local out=$OUT/$1/compare/seed$2
  [ -f "$out/compare.json" ] && return 0
  $PYTHON -m bicyclegan_pl.compare cyclegan.ckpt=$OUT/$1/cyclegan/seed$2/checkpoints/last.ckpt \
    ghiasi.ckpt=$OUT/$1/ghiasi/seed$2/checkpoints/last.ckpt direction=$3 "methods=$4" max_images=50 \
    gatys.steps=100 gatys.init=content gatys.vgg.weights=$LOSS_VGG_GATYS gatys.vgg.preprocessing=$PREPROCESSING \
    gatys.vgg.normalize.images=$GATYS_NORMALIZE gatys.vgg.normalize.size=64 \
    style_network.weights=$VGG lpips.net_type=$LPIPS \
    metrics/feature_extractor@feature_extractor=$FEATURES seed=$2 out_dir=$out
}
compare colorization 0 AtoB "[gatys,ghiasi,cyclegan]"
compare monet 0 BtoA "[gatys,ghiasi,cyclegan]"
for seed in 1 2; do
  compare colorization $seed AtoB "[ghiasi,cyclegan]"
  compare monet $seed BtoA "[ghiasi,cyclegan]"
done
for task in colorization monet; do
  $PYTHON experiments/seed004_comparison/summarise.py $OUT/$task/compare > experiments/seed004_comparison/$task.md
  cp $OUT/$task/compare/seed0/compare.png experiments/seed004_comparison/$task.png
done
