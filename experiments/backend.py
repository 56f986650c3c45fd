"""Which devices an entry point runs on, and at what float32 precision (docs/cpu.md, "Backend and precision").

JAX picks its backend silently: a CUDA plugin that fails to load leaves a
run training on the CPU. `--device` makes the expectation an error instead,
and every entry point prints the backend, its devices and the precision, and
records them beside its results (`record`).

On GPUs, float32 matrix products and convolutions default to TF32 (about 3
significant digits), far above the likelihood solver's tolerance. The
`--precision` default, "highest", is full float32 everywhere; on CPU it is
what XLA computes anyway (the same bits, measured on the digits network).
Compiled programs go to JAX's persistent cache unless --no-compilation-cache,
so that a training step is compiled once per machine; JAX keeps no program with
host callbacks, which every `eqx.error_if` check is, so the tables' solves are
still compiled by each process (docs/cpu.md). `--coordinator` makes the process one
of several that run one computation (`experiments.distributed`).
"""

import dataclasses
import os
import sys
from pathlib import Path
from typing import Literal

import jax

from experiments import distributed
from experiments.cli import option

Device = Literal["any", "cpu", "gpu", "tpu"]
Precision = Literal["default", "high", "highest"]


class DeviceUnavailableError(RuntimeError):
    """The backend JAX chose is not the one asked for."""


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    device: Device = option("refuse to run unless JAX's backend is this one ('any': whichever it is)", "any")
    precision: Precision = option(
        "float32 matmul and convolution precision (jax_default_matmul_precision): 'highest' is full "
        "float32; 'default' lets a GPU use TF32 (faster, about 3 significant digits)", "highest")
    compilation_cache: bool = option(
        "keep compiled programs in JAX's persistent cache ($SBGC_COMPILATION_CACHE, default "
        "~/.cache/sbgc/jax), so that the next process with the same programs does not compile them", True)
    coordinator: str | None = option(
        "HOST:PORT of process 0 of a run over several processes or hosts (jax.distributed.initialize; "
        "README, GPUs and clusters); 'auto': found by JAX under SLURM or Open MPI (default: one process)")
    num_processes: int | None = option("with --coordinator: the run's processes (default: the cluster's)",
                                       at_least=1)
    process_id: int | None = option("with --coordinator: this process's number from 0, process 0 writing "
                                    "the files (default: the cluster's)", at_least=0)


# The options that say where and how a computation runs, not what it computes: a resume or a
# rerun may change them.
WHERE_OPTIONS = ("device", "compilation_cache", "coordinator", "num_processes", "process_id")


def cache_folder() -> Path:
    return Path(os.environ.get("SBGC_COMPILATION_CACHE", Path.home() / ".cache" / "sbgc" / "jax"))


def use_backend(options: BackendOptions) -> dict:
    """Join the other processes of --coordinator, check the backend against --device, set
    --precision for the whole process, print both on stderr, and return `record()`."""
    if options.coordinator is not None:
        distributed.join(options.coordinator, options.num_processes, options.process_id)
    elif options.num_processes is not None or options.process_id is not None:
        raise ValueError("--num-processes and --process-id need --coordinator HOST:PORT (or auto)")
    backend = jax.default_backend()
    if options.device != "any" and backend != options.device:
        raise DeviceUnavailableError(
            f"--device {options.device}: JAX runs on {backend} ({', '.join(map(str, jax.devices()))}); "
            f"no {options.device} backend was found. For NVIDIA GPUs install jax[cuda12] into this "
            "environment (README, GPU section), or pass --device any")
    jax.config.update("jax_default_matmul_precision", None if options.precision == "default" else options.precision)
    # A cache chosen before (the test suite's own) stays.
    if options.compilation_cache and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(cache_folder()))
    if options.coordinator is not None:
        distributed.open_collectives()  # after the compilation cache is chosen: it compiles
    summary = record()
    print(f"backend {summary['backend']}: {len(summary['devices'])} device(s) ({', '.join(summary['devices'])}), "
          f"{summary['processes']} process(es), float32 precision {summary['precision']}", file=sys.stderr)
    return summary


def record() -> dict:
    """What this process runs on, as results and run folders record it."""
    return {"backend": jax.default_backend(),
            "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()],
            "processes": jax.process_count(),
            "precision": jax.config.jax_default_matmul_precision or "default"}


# Where a folder was first made; a resume elsewhere (another machine, more devices) is not
# another computation, so a comparison of saved settings leaves these out.
RECORD_KEYS = tuple(f"backend.{name}" for name in ("backend", "devices", "processes", "precision"))
