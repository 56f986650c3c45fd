#!/usr/bin/env bash
# A training run's snapshot in the repository, so that a run stopped on one machine continues
# on another (a checkpoint is written atomically, so a copy of a running run is consistent).
#   results/snapshot.sh save RUN SAVED      # before a session ends: commit SAVED afterwards
#   results/snapshot.sh restore RUN SAVED   # RUN without a checkpoint gets SAVED's
# SAVED holds checkpoint.eqx, config.json, log.jsonl and the kept checkpoints/ (if any).
set -euo pipefail
action=$1 run=$2 saved=$3
case $action in
  save)
    mkdir -p "$saved"
    cp "$run"/checkpoint.eqx "$run"/config.json "$run"/log.jsonl "$saved"/
    kept=("$run"/checkpoints/*.eqx)
    if [ -e "${kept[0]}" ]; then  # a run may keep none yet
      mkdir -p "$saved/checkpoints" && cp "${kept[@]}" "$saved/checkpoints/"
    fi
    ;;
  restore)
    if [ ! -f "$run/checkpoint.eqx" ] && [ -f "$saved/checkpoint.eqx" ]; then
      mkdir -p "$run" && cp -r "$saved"/. "$run"/
    fi
    ;;
  *) echo "usage: $0 save|restore RUN SAVED" >&2; exit 2 ;;
esac
