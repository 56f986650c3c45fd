"""A device check: the cifar10 preset trained, resumed and evaluated on synthetic data in minutes.

    bash benchmarks/device_check.sh                       # on an accelerator: 8 minutes at most
    python -m benchmarks.device_check --toy --out DIR     # the same stages, tiny, on a CPU

Stages, each timed, skipped when the budget cannot hold it and cut at its deadline with
what it had done (benchmarks/timed_stages.py):

1. devices: JAX's backend, devices and package versions (`--device gpu` fails on a CPU fallback);
2. data: synthetic CIFAR-shaped images (uint8 32x32x3, 10 labels) written as CIFAR-10's python
   batches, the `--data` format of the cifar10 preset, and read back by its loader;
3. train: `experiments.train --preset cifar10`, steps/s from the run's log.jsonl;
4. resume: the same run `--resume`d to more steps, checked to go on from its checkpoint;
5. table1: `experiments.table1` on a few test images at the CPU presets' settings;
6. precision: the same at `--precision default` (TF32 on a GPU) with the same seed, so the same
   images, noise and probes: max |delta log p| and changed predictions against stage 5;
7. table1_paper: table1 at the paper's settings (docs/method.md §4.10), last: the dearest.

The entry points run in this process (`main(argv)`), so that JAX starts once and a stage
compiles only what the stages before it did not; the resumed run still reads its state from
the checkpoint on disk (and reuses the compiled step).
The data and the run go to --work (default: a temporary folder, removed at the end); --out
gets device_check.json and device_check.md, rewritten after every stage, and each table's
per-image records (NAME.jsonl). benchmarks/README.md, "Device check", says how to run it.
"""

import contextlib
import dataclasses
import functools
import importlib.metadata
import pickle
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import numpy as np
from jaxtyping import Int64, UInt8

from benchmarks.device_report import markdown
from benchmarks.timed_stages import Stage, run_stages, until_deadline
from experiments import backend, checkpoint, estimates, table1, train
from experiments.backend import BackendOptions, Device
from experiments.cli import option, parse_config
from experiments.data import CIFAR10_CLASSES, load_dataset
from experiments.files import read_lines, write_atomically, write_lines
from experiments.results import RESULTS_FILE, write_summary
from experiments.runs import load_run

VERSIONS = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt",
            "equinox", "diffrax", "optax", "numpy")
# One image per solve: the first solve of a table compiles and the next ones are timed alone,
# and a deadline loses at most the image in progress.
IMAGES_PER_SOLVE = 1


@dataclasses.dataclass(frozen=True)
class DeviceCheckConfig:
    out: Path = option("folder of device_check.json, device_check.md and the tables' records",
                       Path("results/device_check"))
    toy: bool = option("the tiny configuration (CPU, CI) instead of the full one", False)
    device: Device = option("fail the devices stage, and so skip the others, unless JAX runs on this "
                            "backend ('any': whichever it is)", "any")
    budget_seconds: float = option("time for all stages, from the first", 430.0, above=0)
    work: Path | None = option("folder for the data and the run (default: a temporary one, removed at the end)")


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The likelihood classifier's settings that the tables vary."""

    probes: int
    rtol: float
    atol: float

    @classmethod
    def of(cls, preset: str) -> "Estimate":
        values = estimates.PRESET_EVALUATION[preset]
        return cls(values["probes"], values["rtol"], values["atol"])

    def argv(self) -> list[str]:
        return ["--probes", str(self.probes), "--rtol", str(self.rtol), "--atol", str(self.atol)]


@dataclasses.dataclass(frozen=True)
class CheckSizes:
    """How much work each stage does, and its time limits: stage name -> (seconds it needs
    left to start, seconds after which it is cut; None: whatever is left)."""

    train_per_batch: int  # images in each of data_batch_1..5
    test_images: int
    train_options: tuple[str, ...]  # train's options beyond the preset's
    batch_size: int
    steps: int
    resume_steps: int
    log_every: int
    images: int  # test images per table (--limit)
    cpu: Estimate
    paper: Estimate
    limits: dict[str, tuple[float, float | None]]


# Full: the cifar10 network (67 M parameters) at the paper's batch, warmed up in 20 steps instead
# of 5,000 so that 300 steps leave a network that has learned something (a fresh one predicts
# zero noise, the easiest ODE for the tables: docs/method.md §2.6). The limits are guesses made
# without a GPU, compiling included, to be replaced by what a run measures.
FULL = CheckSizes(train_per_batch=512, test_images=100, train_options=("--warmup-steps", "20"), batch_size=128,
                  steps=200, resume_steps=100, log_every=50, images=3, cpu=Estimate.of("digits"),
                  paper=Estimate.of("cifar10"),
                  limits={"train": (60, 120), "resume": (40, 90), "table1": (40, 60), "precision": (40, 60),
                          "table1_paper": (60, None)})
# Toy: the same stages in seconds of work, mostly compiling. Its "paper" settings are its "CPU"
# ones, so that the last stage reuses the compiled solve (a program of new settings costs a compile).
TOY = CheckSizes(train_per_batch=8, test_images=10,
                 train_options=("--nf", "8", "--ch-mult", "1", "--num-res-blocks", "1", "--warmup-steps", "1"),
                 batch_size=8, steps=2, resume_steps=2, log_every=1, images=1, cpu=Estimate(1, 1e-1, 1e-1),
                 paper=Estimate(1, 1e-1, 1e-1), limits={})


@dataclasses.dataclass(frozen=True)
class Paths:
    work: Path
    out: Path

    @property
    def data(self) -> Path:
        return self.work / "cifar-10-batches-py"

    @property
    def run(self) -> Path:
        return self.work / "run"


def synthetic_images(patterns: np.ndarray, labels: Int64[np.ndarray, " n"], rng: np.random.Generator
                     ) -> UInt8[np.ndarray, "n 32 32 3"]:
    """Each label's smooth colour pattern (8x8, upsampled) plus pixel noise: something to learn
    and to classify, unlike pure noise."""
    base = patterns[labels].repeat(4, axis=1).repeat(4, axis=2)
    return np.clip(np.rint(base + rng.normal(0, 32, base.shape)), 0, 255).astype(np.uint8)


def write_cifar10_batches(folder: Path, per_batch: int, test_images: int, seed: int = 0) -> None:
    """data_batch_1..5, test_batch and batches.meta as CIFAR-10's python version has them
    (pickles, the format itself): rows of 3,072 bytes, the red, green, then blue 32x32 planes."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0, 255, (len(CIFAR10_CLASSES), 8, 8, 3))
    batches = {f"data_batch_{k}": per_batch for k in range(1, 6)} | {"test_batch": test_images}
    for name, size in batches.items():
        labels = np.arange(size) % len(CIFAR10_CLASSES)
        rows = synthetic_images(patterns, labels, rng).transpose(0, 3, 1, 2).reshape(size, -1)
        _write_pickle(folder / name, {b"data": rows, b"labels": labels.tolist()})
    _write_pickle(folder / "batches.meta", {b"label_names": [name.encode() for name in CIFAR10_CLASSES]})


def _write_pickle(path: Path, value: dict) -> None:
    write_atomically(path, lambda file: pickle.dump(value, file))


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def peak_memory_gib() -> float | None:
    """The largest peak of device memory in use so far (None where devices keep no count: CPUs)."""
    stats = [device.memory_stats() for device in jax.local_devices()]
    if any(not s or "peak_bytes_in_use" not in s for s in stats):
        return None
    return max(s["peak_bytes_in_use"] for s in stats) / 2**30


def command(module: str, argv: list[str]) -> str:
    return " ".join([f"python -m experiments.{module}", *argv])


def devices_stage(config: DeviceCheckConfig, results: dict, passed: Callable[[], bool]) -> dict:
    record = backend.use_backend(BackendOptions(device=config.device))
    stats = jax.local_devices()[0].memory_stats() or {}  # none on CPUs
    return {**record, "memory_limit_gib": stats["bytes_limit"] / 2**30 if "bytes_limit" in stats else None}


def data_stage(sizes: CheckSizes, paths: Paths, results: dict, passed: Callable[[], bool]) -> dict:
    write_cifar10_batches(paths.data, sizes.train_per_batch, sizes.test_images)
    read = {split: load_dataset("cifar10", split, source=paths.data) for split in ("train", "test")}
    return {"folder": str(paths.data), "train_images": len(read["train"].labels),
            "test_images": len(read["test"].labels), "image_shape": list(read["train"].images.shape[1:])}


def train_argv(sizes: CheckSizes, paths: Paths, steps: int) -> list[str]:
    # No sample grids: each is a probability-flow solve of the network, compiled apart.
    return ["--preset", "cifar10", *sizes.train_options, "--data", str(paths.data), "--out", str(paths.run),
            "--steps", str(steps), "--batch-size", str(sizes.batch_size), "--log-every", str(sizes.log_every),
            "--samples-per-class", "0"]


def training_speed(lines: list[dict]) -> dict:
    """Steps/s of log lines: the median after the first, whose interval includes compiling
    the step in a fresh process."""
    rates = [line["steps_per_second"] for line in lines]
    return {"steps_per_second": float(np.median(rates[1:])) if len(rates) > 1 else None,
            "first_line_steps_per_second": rates[0] if rates else None}


def checkpoint_step(paths: Paths) -> int | None:
    """The step of the run's checkpoint, read back as the tables read it (None: no checkpoint)."""
    return load_run(paths.run).step if (paths.run / checkpoint.CHECKPOINT_FILE).exists() else None


def train_stage(sizes: CheckSizes, paths: Paths, results: dict, passed: Callable[[], bool]) -> dict:
    argv = train_argv(sizes, paths, sizes.steps)
    cut = until_deadline(passed, lambda: train.main(argv))
    lines = read_lines(paths.run / "log.jsonl")
    return {"command": command("train", argv), "cut": cut, "checkpoint_step": checkpoint_step(paths),
            "batch_size": sizes.batch_size, "log": lines, **training_speed(lines),
            "peak_memory_gib": peak_memory_gib()}


def resume_stage(sizes: CheckSizes, paths: Paths, results: dict, passed: Callable[[], bool]) -> dict:
    """Continue to `resume_steps` more; it went on from the checkpoint if the log kept the
    first run's lines and the new ones begin after its step (a start from scratch trims
    the log to step 0) and the checkpoint reached the new --steps."""
    before = results["train"]["checkpoint_step"]
    if before is None:
        raise RuntimeError("training was cut before it saved a checkpoint")
    target = before + sizes.resume_steps
    argv = [*train_argv(sizes, paths, target), "--resume"]
    cut = until_deadline(passed, lambda: train.main(argv))
    lines, after = read_lines(paths.run / "log.jsonl"), checkpoint_step(paths)
    kept = [line for line in results["train"]["log"] if line["step"] <= before]
    new_steps = [line["step"] for line in lines[len(kept):]]
    expected = [s for s in range(before + 1, target + 1) if s % sizes.log_every == 0 or s == target]
    continued = lines[:len(kept)] == kept and new_steps == expected[:len(new_steps)] and after > before
    return {"command": command("train", argv), "cut": cut, "from_step": before, "to_step": target,
            "checkpoint_step": after, "new_log_steps": new_steps,
            "continued_from_checkpoint": continued and (cut or after == target),
            **training_speed(lines[len(kept):]), "peak_memory_gib": peak_memory_gib()}


def table_figures(records: list[dict]) -> dict:
    """Cost and scores of a table's per-image records (estimates' schema)."""
    if not records:
        return {"images": 0}
    compiling = [r["compiling"] for r in records]
    scores = np.asarray([r["scores"] for r in records])
    return {"images": len(records),
            "seconds_per_image": estimates.seconds_per_image([r["seconds"] for r in records], compiling),
            "seconds_include_compiling": all(compiling),
            "first_image_seconds": records[0]["seconds"],
            "nfe_per_image": float(np.mean([r["cost"]["nfe"] for r in records])),
            "passes_per_image": float(np.mean([r["cost"]["passes"] for r in records])),
            "accuracy": float(np.mean([r["label"] == r["prediction"] for r in records])),
            "log_p_finite": bool(np.all(np.isfinite(scores))),
            "median_abs_log_p": float(np.median(np.abs(scores)))}


def table_stage(name: str, settings: Estimate, precision: str, sizes: CheckSizes, paths: Paths,
                results: dict, passed: Callable[[], bool]) -> dict:
    folder = paths.work / name
    argv = ["--run", str(paths.run), "--data", str(paths.data), "--limit", str(sizes.images),
            "--images-per-solve", str(IMAGES_PER_SOLVE), *settings.argv(), "--precision", precision,
            "--out", str(folder)]
    cut = until_deadline(passed, lambda: table1.main(argv))
    records = read_lines(folder / RESULTS_FILE)
    write_lines(paths.out / f"{name}.jsonl", records)
    return {"command": command("table1", argv), "cut": cut, "precision": precision,
            "settings": dataclasses.asdict(settings), **table_figures(records), "records": records,
            "peak_memory_gib": peak_memory_gib()}


def score_differences(reference: list[dict], other: list[dict]) -> dict:
    """|delta log p| over the images both scored (every label), and changed predictions."""
    by_index = {r["index"]: r for r in reference}
    pairs = [(by_index[r["index"]], r) for r in other if r["index"] in by_index]
    if not pairs:
        return {"images_compared": 0}
    delta = np.abs(np.asarray([a["scores"] for a, _ in pairs]) - np.asarray([b["scores"] for _, b in pairs]))
    return {"images_compared": len(pairs), "max_abs_delta_log_p": float(delta.max()),
            "mean_abs_delta_log_p": float(delta.mean()),
            "predictions_changed": sum(a["prediction"] != b["prediction"] for a, b in pairs)}


def precision_stage(sizes: CheckSizes, paths: Paths, results: dict, passed: Callable[[], bool]) -> dict:
    result = table_stage("precision", sizes.cpu, "default", sizes, paths, results, passed)
    return {**result, "against_highest": score_differences(results["table1"]["records"], result["records"])}


def stages(config: DeviceCheckConfig, sizes: CheckSizes, paths: Paths) -> list[Stage]:
    """The stages in order, with what each must show before its cap cuts it: two log lines (the
    first includes compiling), or a table's first image."""
    log = lambda: read_lines(paths.run / "log.jsonl")
    scored = lambda name: lambda results: bool(read_lines(paths.work / name / RESULTS_FILE))

    def stage(name, run, after, shown=lambda results: True):
        needs, cap = sizes.limits.get(name, (0.0, None))
        return Stage(name, functools.partial(run, sizes, paths), ("devices", *after), needs, cap, shown)

    return [Stage("devices", functools.partial(devices_stage, config)),
            stage("data", data_stage, ()),
            stage("train", train_stage, ("data",), lambda results: len(log()) >= 2),
            stage("resume", resume_stage, ("train",), lambda results: len(log()) >= len(results["train"]["log"]) + 2),
            stage("table1", functools.partial(table_stage, "table1", sizes.cpu, "highest"), ("train",),
                  scored("table1")),
            stage("precision", precision_stage, ("table1",), scored("precision")),
            stage("table1_paper", functools.partial(table_stage, "table1_paper", sizes.paper, "highest"),
                  ("train",), scored("table1_paper"))]


@contextlib.contextmanager
def work_folder(chosen: Path | None) -> Iterator[Path]:
    if chosen is not None:
        yield chosen
        return
    with tempfile.TemporaryDirectory(prefix="sbgc-device-check-") as folder:
        yield Path(folder)


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(DeviceCheckConfig, argv, prog="python -m benchmarks.device_check",
                          description=__doc__.split("\n\n")[0])
    began = time.perf_counter()
    header = {"toy": config.toy, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "versions": versions(), "budget_seconds": config.budget_seconds}

    def report(records: dict[str, dict]) -> dict:
        summary = {**header, "wall_seconds": round(time.perf_counter() - began, 1), "stages": records}
        write_summary(config.out, "device_check", summary, markdown(summary))
        return summary

    with work_folder(config.work) as work:
        records = run_stages(stages(config, TOY if config.toy else FULL, Paths(work, config.out)),
                             config.budget_seconds, report)
    summary = report(records)  # once more: the wall time with the work folder removed
    print(markdown(summary))
    return summary


if __name__ == "__main__":
    # A failed stage fails the command; a skipped or cut one does not (the summary says why).
    raise SystemExit(any(r["status"] == "failed" for r in main()["stages"].values()))
