#!/usr/bin/env bash
# The seed 000 study redone (issue 14): the seed's own loops, the literal readings of its lists
# and a step-count control, on the main job's recipe (README "The main job"), seeds 0, 1, 2, equal
# iterations; the ground-truth metrics (mode coverage, mode KL, mask IoU, encoded accuracy) from
# the metrics callback after the last epoch; every variant compared with the seed's final loop by
# Welch's t-test (difference of means, 95 % interval, p). Run from the repository root:
#   bash experiments/seed000_ablation/run_loops.sh
# 33 runs of 8-16 minutes each with one thread (the pilot of 2026-11-30; the two-step configs cost
# more): about 3 hours on 2 CPU cores (two halves side by side); a GPU takes minutes.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
FIRST=bicycle_seed000_final,bicycle_seed000_early,bicycle_seed000_train2,bicycle_order_c,bicycle_order_a_stepwise,bicycle_order_b_stepwise
SECOND=bicycle_order_c_stepwise,bicycle_accum_1_stepwise,bicycle_accum_2_stepwise,bicycle_accum_4_stepwise,bicycle_seed000_final_two_steps

$PYTHON -m bicyclegan_pl.train -m +sweep=seed000_loops "+experiment=$FIRST" logger=csv hydra.sweep.dir=multirun/seed000_loops/first & first=$!
$PYTHON -m bicyclegan_pl.train -m +sweep=seed000_loops "+experiment=$SECOND" logger=csv hydra.sweep.dir=multirun/seed000_loops/second & second=$!
wait $first; wait $second   # (a failed job stops the script)

$PYTHON -m bicyclegan_pl.report multirun/seed000_loops/first multirun/seed000_loops/second --group-by +experiment \
  --baseline bicycle_seed000_final --smooth 5 --out experiments/seed000_ablation/loops
