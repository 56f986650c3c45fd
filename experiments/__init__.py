"""Entry points: `python -m experiments.NAME`.

docs/cpu.md trap 2: XLA on a CPU uses about one core unless it sees one
device per core, over which the entry points shard their batches. So when an
entry point starts (`python -m` imports this package first, with
sys.argv[0] == "-m", before any JAX backend exists), it asks JAX for one CPU
device per core this process may run on (its CPU affinity, not the machine's
core count: a container often sees the host's), unless the user chose a
count (JAX_NUM_CPU_DEVICES, or XLA_FLAGS' --xla_force_host_platform_device_count).
It has to happen here, at import: JAX accepts the setting only before its
first computation. The setting concerns the CPU platform only; GPUs are unaffected.

From the same moment a stop (SIGINT, SIGTERM) ends the process with status
130 until a loop takes it over to save its work (`experiments.stopping`).
Importing `experiments` as a library (tests, notebooks) changes neither.
"""

import os
import sys

if sys.argv[:1] == ["-m"]:
    from experiments.stopping import exit_on_stop

    exit_on_stop()
    import jax

    _chosen = "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get(
        "XLA_FLAGS", "")
    if not _chosen:
        _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        jax.config.update("jax_num_cpu_devices", _cores or 1)
