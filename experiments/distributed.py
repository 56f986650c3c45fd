"""One run over several processes and hosts: JAX's multi-process runtime (README, "GPUs
and clusters").

`--coordinator` (every entry point's; `experiments.backend`) joins the process to
the others with `jax.distributed.initialize` before anything touches JAX's
backend. Then `jax.devices()` lists every process's devices and
`jax.local_devices()` this process's own. Training splits each batch over all of
them (`experiments.train`); evaluation gives each process its own chunks of test
images, computed on its own devices (`experiments.results.run_chunks`).

Every process reads the run and results folders, so they must lie on a
filesystem that every host sees. Process 0 alone writes the run folder's files
and a results folder's config.json, images.jsonl and summary, and holds the
folder's lock; the few other files of an entry point (figure2.json, pictures)
every process writes alike, atomically.
"""

import contextlib
from pathlib import Path

import jax
from jax.experimental import multihost_utils

from experiments.files import locked


def join(coordinator: str, num_processes: int | None, process_id: int | None) -> None:
    """Join the run's other processes: at `coordinator` (HOST:PORT of process 0), or, for
    "auto", where JAX finds the cluster's own settings (SLURM, Open MPI), as are
    `num_processes` and `process_id` where None. A second call (another entry point in the
    same process) changes nothing."""
    if jax.distributed.is_initialized():
        return
    # On CPU the processes' collectives go over TCP with gloo: JAX 0.10's default, named here so
    # that another default cannot leave a CPU run without them.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(None if coordinator == "auto" else coordinator, num_processes, process_id)


def open_collectives() -> None:
    """One collective right after joining, while the processes are still together: gloo sets
    up its connections at the first collective and fails if a peer comes more than 30 s later
    (a fixed limit; seen when one process of a run on a busy host was slow to load its data),
    while once set up a collective waits longer for a late peer (70 s measured,
    results/distributed/gloo_late_peer.txt)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("experiments.distributed: collectives open")


def writes_files() -> bool:
    """Whether this process writes the shared files: process 0 does."""
    return jax.process_index() == 0


def holding(folder: Path) -> contextlib.AbstractContextManager:
    """`locked(folder)` in the process that writes the files; nothing in the others."""
    return locked(folder) if writes_files() else contextlib.nullcontext()


def wait_for_the_others(name: str) -> None:
    """Return once every process has called this with `name` (at once with one process): so
    that none reads a file that process 0 is still writing (a run's last checkpoint)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
