"""Entry points: `python -m experiments.NAME`.

CPU_NOTES.md trap 2: XLA on a CPU uses about one core unless it sees one
device per core, over which the entry points shard their batches. So when an
entry point starts (`python -m` imports this package before anything else,
with sys.argv[0] == "-m") and jax is not loaded yet, ask XLA for one host
device per core this process may run on (its CPU affinity, not the machine's
core count: a container often sees the host's). The flag only concerns the
CPU platform; GPUs are unaffected.
"""

import os
import sys

if sys.argv[:1] == ["-m"] and "jax" not in sys.modules:
    _flag = "--xla_force_host_platform_device_count"
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}={_cores or 1}".strip()
