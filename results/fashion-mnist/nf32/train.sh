#!/usr/bin/env bash
# The fashion-mnist preset's run (issue 27): nf 32, the unweighted loss, 10,000 steps of 128,
# keeping the checkpoints of steps 2,500, 5,000, 7,500 (the scaling curve) and the last.
# Resumable on this machine or another (from the committed snapshot in resume/):
#   nohup results/fashion-mnist/nf32/train.sh > runs/fashion-train.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../../.."
run=runs/fashion-mnist
results/snapshot.sh restore "$run" results/fashion-mnist/nf32/resume
resume=""; [ -f "$run/checkpoint.eqx" ] && resume="--resume"
.venv/bin/python -m experiments.train --preset fashion-mnist --keep-checkpoints --keep-last 1 --keep-every 2500 $resume
