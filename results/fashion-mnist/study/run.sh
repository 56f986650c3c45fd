#!/usr/bin/env bash
# The fashion-mnist recipe study (issue 27): arms at equal compute (1,500 steps of 128 each),
# every arm evaluated on the same 300 seeded test images with cheap settings (1 probe).
# Resumable: rerun the same command after any interruption.
#   nohup results/fashion-mnist/study/run.sh > runs/study.log 2>&1 &
# Arms: NAME and the train options that differ from the preset. The arms ran under the preset of
# before the study (nf 16, likelihood weighting, the one each option below changes); `--nf` and
# `--weighting` now name those values, since the fashion-mnist preset became the study's
# outcome (nf 32, unweighted).
set -euo pipefail
cd "$(dirname "$0")/../../.."
STEPS=${STEPS:-1500}
arms=(
  "likelihood_is --weighting likelihood_is --nf 16"
  "none --weighting none --nf 16"
  "mixture --weighting mixture --nf 16"
  "none_nf32 --weighting none --nf 32"
)
for arm in "${arms[@]}"; do
  read -r name options <<<"$arm"
  run=runs/study/$name
  # An arm whose table1 is committed is done, on this machine or another.
  [ -f "results/fashion-mnist/study/$name/table1/table1.json" ] && continue
  # A training stopped on another machine continues from its committed checkpoint.
  results/snapshot.sh restore "$run" "results/fashion-mnist/study/$name/resume"
  resume=""; [ -f "$run/checkpoint.eqx" ] && resume="--resume"
  .venv/bin/python -m experiments.train --preset fashion-mnist --steps "$STEPS" --out "$run" $resume $options
  .venv/bin/python -m experiments.table1 --run "$run" --limit 300 --probes 1 \
    --out "results/fashion-mnist/study/$name/table1"
done
