#!/usr/bin/env bash
# The accuracy-against-compute curve of the fashion-mnist preset's run (issue 27): table1 of
# each kept checkpoint on the recipe study's 300 seeded test images with its cheap settings
# (1 probe), so that the points sit beside the study's arms. Each checkpoint is exported
# (experiments.export) into runs/fashion-steps/STEP first, the folder table1 reads as a run.
# Skips a step whose table1 is committed or whose checkpoint is not there yet; rerun it as the
# training goes on:
#   nohup results/fashion-mnist/nf32/curve.sh > runs/fashion-curve.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../../.."
for step in 2500 5000 7500; do
  out=results/fashion-mnist/nf32/curve/step_$step/table1
  checkpoint=checkpoints/$(printf 'step_%07d.eqx' "$step")
  [ -f "$out/table1.json" ] && continue
  [ -f "runs/fashion-mnist/$checkpoint" ] || continue
  .venv/bin/python -m experiments.export --run runs/fashion-mnist --checkpoint "$checkpoint" \
    --out "runs/fashion-steps/$step"
  .venv/bin/python -m experiments.table1 --run "runs/fashion-steps/$step" --limit 300 --probes 1 --out "$out"
done
