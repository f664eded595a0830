#!/usr/bin/env bash
# Seed 000's claim turned into numbers: does CLIP steer a trained BicycleGAN post hoc, and how does
# that depend on the search (rank: number of samples; optimize: steps and starts)? Judged by the
# ground truth: the fraction of inputs whose best output shows the colour the prompt names.
# Run from the repository root:  bash experiments/clip_text_control/run.sh
#
# 1. the small CLIP of the synthetic world (python -m bicyclegan_pl.clip.pretrain), unless $CLIP exists;
# 2. the main job (`make train`'s recipe) for seeds 0, 1, 2, unless their checkpoints exist;
# 3. guide multiruns over the three checkpoints: 32 validation inputs x 4 colour prompts for rank,
#    8 inputs for the gradient searches (a step costs a forward and backward pass of G and CLIP);
#    each job writes text_control.json;
# 4. report: mean ± std over the 3 BicycleGAN seeds, each setting against rank with 1 sample (= a
#    random z) by Welch's t-test.
# Cost on 2 CPU cores: CLIP ~10 min, 3 x 8 min of BicycleGAN training, then ~25 min of guidance.
# Two of these side by side: give each one thread (OMP_NUM_THREADS=1), or both slow down ~10x.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-multirun/clip_text_control}
CLIP=${CLIP:-$HOME/.cache/bicyclegan_pl/weights/clip-synthetic}
RUNS=${RUNS:-outputs/clip_text_control}
PROMPTS='prompt=[a red object,a green object,a blue object,a yellow object]'

[ -f "$CLIP/config.json" ] || $PYTHON -m bicyclegan_pl.clip.pretrain out_dir="$CLIP"
CKPTS=()
for seed in 0 1 2; do
  run=$RUNS/bicycle_seed$seed
  [ -f "$run/checkpoints/last.ckpt" ] || $PYTHON -m bicyclegan_pl.train seed=$seed logger=csv hydra.run.dir="$run"
  CKPTS+=("$run/checkpoints/last.ckpt")
done
ckpts=$(IFS=,; echo "${CKPTS[*]}")
common=(clip.model="$CLIP" "$PROMPTS" top_k=1 'out_dir=${hydra:runtime.output_dir}' "ckpt=$ckpts")

$PYTHON -m bicyclegan_pl.guide -m "${common[@]}" val_inputs=32 method=rank \
  rank.num_samples=1,2,4,8,16,64 hydra.sweep.dir=$OUT/rank
$PYTHON -m bicyclegan_pl.guide -m "${common[@]}" val_inputs=8 method=optimize \
  optimize.num_starts=1 optimize.steps=10,30,100 hydra.sweep.dir=$OUT/optimize_steps
$PYTHON -m bicyclegan_pl.guide -m "${common[@]}" val_inputs=8 method=optimize \
  optimize.num_starts=4 optimize.steps=10,30 hydra.sweep.dir=$OUT/optimize_starts
$PYTHON -m bicyclegan_pl.guide -m "${common[@]}" val_inputs=8 method=rank_then_optimize \
  rank.num_samples=4 optimize.num_starts=1 optimize.steps=30 hydra.sweep.dir=$OUT/rank_then_optimize

$PYTHON -m bicyclegan_pl.report $OUT/rank --group-by rank.num_samples --baseline 1 \
  --compare eval/text_best --out experiments/clip_text_control/rank
$PYTHON -m bicyclegan_pl.report $OUT/rank $OUT/optimize_steps $OUT/optimize_starts $OUT/rank_then_optimize \
  --group-by method,rank.num_samples,optimize.num_starts,optimize.steps --baseline "method=rank rank.num_samples=1" \
  --compare eval/text_best --out experiments/clip_text_control/all
