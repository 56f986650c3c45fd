#!/usr/bin/env bash
# The accuracy-against-compute curve of the fashion-mnist preset's run (issue 27): table1 of
# each kept checkpoint on the recipe study's 300 seeded test images with its cheap settings
# (1 probe), so that the points sit beside the study's arms. Each checkpoint's EMA weights are
# exported (experiments.export) into curve/step_N/run/, committed (5.6 MB), so that a point can
# be evaluated on any machine once its checkpoint has been dropped. Step 2,000's stands in for
# 2,500, whose checkpoint never existed (train.sh). The last step's weights are the shipped
# model, exported to pretrained/fashion-mnist/ instead. Skips a step whose table1 is committed or
# whose weights are not there yet; rerun it as the training goes on:
#   nohup results/fashion-mnist/nf32/curve.sh > runs/fashion-curve.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../../.."
for step in 2000 5000 7500 10000; do
  point=results/fashion-mnist/nf32/curve/step_$step
  weights=$point/run
  [ "$step" = 10000 ] && weights=pretrained/fashion-mnist
  checkpoint=checkpoints/$(printf 'step_%07d.eqx' "$step")
  [ -f "$point/table1/table1.json" ] && continue
  if [ ! -f "$weights/model.eqx" ]; then
    [ -f "runs/fashion-mnist/$checkpoint" ] || continue
    .venv/bin/python -m experiments.export --run runs/fashion-mnist --checkpoint "$checkpoint" --out "$weights"
  fi
  .venv/bin/python -m experiments.table1 --run "$weights" --limit 300 --probes 1 --out "$point/table1"
done
