#!/usr/bin/env bash
# The fashion-mnist preset's run (issue 27): nf 32, the unweighted loss, 10,000 steps of 128,
# keeping the checkpoints of steps 5,000 and 7,500 (the scaling curve) and the last. (It saved every
# 1,000 steps until step 2,861, so that of step 2,500 never existed; step 2,000's stands in.)
# Resumable on this machine or another (from the committed snapshot in resume/):
#   nohup results/fashion-mnist/nf32/train.sh > runs/fashion-train.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../../.."
run=runs/fashion-mnist
results/snapshot.sh restore "$run" results/fashion-mnist/nf32/resume
resume=""; [ -f "$run/checkpoint.eqx" ] && resume="--resume"
.venv/bin/python -m experiments.train --preset fashion-mnist --keep-checkpoints --keep-last 1 --keep-every 2500 \
  --checkpoint-every 2500 $resume
