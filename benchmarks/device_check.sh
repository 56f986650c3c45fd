#!/usr/bin/env bash
# The device check on an accelerator (benchmarks/README.md, "Device check"):
#
#   bash benchmarks/device_check.sh [more options of python -m benchmarks.device_check]
#
# Writes device_check.json, .md and .log and the tables' records to $OUT (the folder the device
# tool brings back) or results/gpu. The whole command ends within $DEVICE_CHECK_SECONDS (default
# 470, under 8 minutes): the stages share a budget 40 s shorter, and `timeout` ends one that
# overruns it (XLA finishes a compile or a solve before Python sees a deadline), SIGKILL 10 s
# later; device_check.md then shows that stage as running. $DEVICE (default gpu) is the backend
# the check insists on; $PYTHON (default python3) the interpreter with JAX for it.
set -u
cd "$(dirname "$0")/.."
limit=${DEVICE_CHECK_SECONDS:-470}
out=${OUT:-results/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
timeout --kill-after=10 "$limit" "${PYTHON:-python3}" -m benchmarks.device_check --out "$out" \
    --device "${DEVICE:-gpu}" --budget-seconds $((limit - 40)) "$@" 2>&1 | tee "$out/device_check.log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "device check: ended by its ${limit} s timeout; $out/device_check.md holds the stages done by then" \
        | tee -a "$out/device_check.log" >&2
fi
exit "$status"
