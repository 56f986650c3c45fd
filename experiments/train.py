"""Train a class-conditional score network by maximum likelihood, or the WideResNet baseline.

    python -m experiments.train --preset digits --out runs/digits
    python -m experiments.train --preset digits --model wrn --out runs/digits-wrn

Score networks (`--model score`, the default): the preset's time weighting
(likelihood weighting with importance-sampled t, or for fashion-mnist the
unweighted loss) under the subVP SDE (docs/method.md §3), Adam with linear
warm-up and global-norm clipping, an EMA (with warm-up) of the parameters.
WideResNets (`--model wrn`, `baseline`): cross-entropy on dequantised images
with random flips (where the preset flips) and random reflection-padded crops,
SGD with Nesterov momentum 0.9 and weight decay 5e-4, lr 0.1 with cosine decay,
no EMA (docs/method.md §8). Both data parallel over every visible device. The run
folder gets `config.json`, `checkpoint.eqx` (model, EMA model, optimiser
state, step and PRNG key; the data order follows from seed and step),
`log.jsonl` and, for score networks, sample grids `samples/step_NNNNNNN.png`.
Checkpoints are written in the background while training goes on
(`checkpoint.BackgroundSaver`); `--keep-checkpoints` keeps them all, or those of
`--keep-last` and `--keep-every`. `--resume` continues bit for bit; Ctrl-C saves
a checkpoint first. Over several processes (`--coordinator`, README "GPUs and
clusters") every batch is split over every process's devices, and process 0
writes the files.
"""

import dataclasses
import functools
import math
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from experiments import backend, checkpoint, pictures
from experiments.cli import parse_config
from experiments.data import Split, load_dataset
from experiments.distributed import holding, wait_for_the_others, writes_files
from experiments.files import append_lines, read_lines, write_lines
from experiments.parallel import data_parallel, local_replica
from experiments.progress import Lines, progress
from experiments.stopping import stops_as_interrupt
from experiments.training import (
    MODELS, PRESET_TRAINING, WRN_TRAINING, StepSettings, TrainConfig, TrainState, batch_indices,
    init_state, make_optimizer, network_config, resolve, train_step,
)


def _run_record(config: TrainConfig) -> dict:
    return {"train": checkpoint.to_json(config), "network": checkpoint.to_json(network_config(config)),
            "backend": backend.record()}


def _check_run_folder(config: TrainConfig) -> None:
    """Before any work: `--resume` needs the run's own settings (up to --steps), and a new run
    must not overwrite a checkpoint."""
    folder = config.out
    if (folder / checkpoint.MODEL_FILE).is_file():
        origin = checkpoint.load_config(folder).get("exported", {}).get("from", "its run folder")
        raise checkpoint.CheckpointError(
            f"{folder} holds an exported model (experiments.export), which evaluates but does not train: "
            f"resume the run it came from ({origin}), or use another --out")
    if config.resume:
        saved = checkpoint.load_config(folder).get("train", {})
        # Options added after the run was made are fine at their defaults (its behaviour then).
        added_later = tuple(f"train.{f.name}" for f in dataclasses.fields(TrainConfig)
                            if f.name not in saved and getattr(config, f.name) == f.default)
        # How often to save and which checkpoints to keep change no number of the run.
        # Nor does where it runs (a resume on another machine), which the record tells.
        # A WRN has no time weighting (runs made before it was a preset's say "likelihood_is").
        no_weighting = ("train.weighting",) if config.model == "wrn" else ()
        ignored = ("train.steps", "train.resume", "train.out", "train.checkpoint_every", "train.checkpoint_minutes",
                   "train.keep_last", "train.keep_every", *(f"train.{name}" for name in backend.WHERE_OPTIONS),
                   *backend.RECORD_KEYS, *added_later, *no_weighting)
        checkpoint.check_same_config(folder, _run_record(config), ignore=ignored)
    elif (folder / checkpoint.CHECKPOINT_FILE).exists():
        raise checkpoint.CheckpointError(
            f"{folder / checkpoint.CHECKPOINT_FILE} exists: pass --resume to continue it, or another --out"
        )


def _start(config: TrainConfig, optimizer) -> TrainState:
    """A fresh state in a new run folder, or the checkpoint of `--resume`; config.json then
    records the settings, the steps this run goes to included."""
    network = network_config(config)
    if config.resume:
        state = checkpoint.load_state(config.out, jax.eval_shape(lambda: init_state(network, config.seed, optimizer)))
        if int(state.step) > config.steps:
            raise checkpoint.CheckpointError(
                f"{config.out / checkpoint.CHECKPOINT_FILE} is at step {int(state.step)}, past --steps "
                f"{config.steps}: give --steps {int(state.step)} or more to resume it (nothing was changed)")
    else:
        state = init_state(network, config.seed, optimizer)
    if writes_files():
        checkpoint.save_config(config.out, _run_record(config))
    return state


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint, which a resumed run will write again (and a
    last line cut short by a kill)."""
    write_lines(path, [line for line in read_lines(path) if line["step"] <= step])


class TrainingDiverged(RuntimeError):
    """The loss or the parameters became NaN or infinite; nothing of that state was saved."""


@eqx.filter_jit
def _all_finite(tree) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def _check_finite(loss: float, state: TrainState, folder: Path, saver: checkpoint.BackgroundSaver) -> None:
    """Raise before a non-finite loss is logged or a non-finite state saved as a checkpoint
    (once the save in flight, of a good state, is done)."""
    state = local_replica(state)  # a check of this process's copy alone: no other process takes part
    if not (np.isfinite(loss) and bool(_all_finite(eqx.filter(state, eqx.is_inexact_array)))):
        saver.wait()
        kept = (f"the last good checkpoint is kept in {folder / checkpoint.CHECKPOINT_FILE}"
                if (folder / checkpoint.CHECKPOINT_FILE).exists() else "no checkpoint was saved")
        raise TrainingDiverged(
            f"training diverged by step {int(state.step)}: the loss or the parameters are NaN or "
            f"infinite (mean loss {loss}); {kept}. Try a lower --learning-rate or --grad-clip.")


def train(config: TrainConfig) -> TrainState:
    """Run (or resume) training to `config.steps`; returns the final state."""
    config = resolve(config)
    _check_run_folder(config)
    network = network_config(config)
    data = load_dataset(config.preset, "train", source=config.data)
    expected_shape = (network.image_size, network.image_size, network.channels)
    if data.images.shape[1:] != expected_shape:
        raise ValueError(f"preset {config.preset} expects images {expected_shape}, the data has "
                         f"{data.images.shape[1:]}")
    if not 1 <= config.batch_size <= len(data.labels):
        raise ValueError(f"--batch-size {config.batch_size} must lie in [1, {len(data.labels)}], "
                         "the number of training images")
    devices = jax.device_count()
    if jax.process_count() > 1 and config.batch_size % devices:
        raise ValueError(f"--batch-size {config.batch_size} does not split over the {devices} devices of the "
                         f"{jax.process_count()} processes: give a multiple of {devices}")

    with holding(config.out):
        return _train(config, data)


def _write_checkpoints(config: TrainConfig, kept_step: int | None, state: TrainState) -> None:
    """The checkpoint, after the kept copy of `kept_step` (if any; then --keep-last and
    --keep-every decide which kept ones stay): a kill between the two then leaves the kept
    one to be written again on resume. Called in the saver's worker thread."""
    data = checkpoint.serialised(state)
    if kept_step is not None:
        checkpoint.write_checkpoint(config.out, data, checkpoint.kept_name(kept_step))
        checkpoint.drop_kept(config.out, config.keep_last, config.keep_every)
    checkpoint.write_checkpoint(config.out, data)


def _train(config: TrainConfig, data: Split) -> TrainState:
    optimizer = make_optimizer(config)
    settings = StepSettings.of(config)
    replicated, batch_sharding = data_parallel(config.batch_size, jax.devices())
    start = _start(config, optimizer)
    step, writes = int(start.step), writes_files()
    state = jax.device_put(start, replicated)
    log_path = config.out / "log.jsonl"
    if writes:
        _trim_log(log_path, step)

    losses, last_time = [], time.perf_counter()
    last_save = last_time
    samples_per_class = config.samples_per_class if MODELS[config.model].samples else 0
    desc = f"train {config.preset} {config.model}"
    # The other processes report once, at the end: process 0's bar shows the steps of all.
    bar = (progress(total=config.steps, initial=step, desc=desc, unit="step") if writes else
           Lines(total=config.steps, initial=step, desc=f"{desc} (process {jax.process_index()})",
                 unit="step", interval=math.inf))
    with stops_as_interrupt() as stop, checkpoint.BackgroundSaver() as saver:
        try:
            while step < config.steps:
                stop.check()
                # Every process gathers the whole batch; device_put sends each device its part.
                index = batch_indices(config.seed, step, len(data.labels), config.batch_size)
                batch = jax.device_put((data.images[index], data.labels[index]), batch_sharding)
                state, loss = train_step(state, *batch, optimizer, settings)
                step += 1
                losses.append(loss)
                bar.update()
                if step % config.log_every == 0 or step == config.steps:
                    now = time.perf_counter()
                    mean_loss = float(np.mean(jax.device_get(local_replica(losses))))
                    _check_finite(mean_loss, state, config.out, saver)
                    if writes:
                        append_lines(log_path, [{"step": step, "loss": mean_loss,
                                                 "steps_per_second": len(losses) / (now - last_time)}])
                    bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
                    losses, last_time = [], now
                due = step % config.checkpoint_every == 0 or step == config.steps
                if writes and (due or time.perf_counter() - last_save >= 60 * config.checkpoint_minutes):
                    unlogged = float(np.mean(jax.device_get(local_replica(losses)))) if losses else 0.0
                    _check_finite(unlogged, state, config.out, saver)
                    kept_step = step if due and config.keep_checkpoints else None
                    saver.save(local_replica(state), functools.partial(_write_checkpoints, config, kept_step))
                    last_save = time.perf_counter()
                if writes and due and samples_per_class:
                    pictures.training_samples(config.out, local_replica(state.ema_model), step,
                                              samples_per_class, data.class_names)
        except KeyboardInterrupt:
            bar.close()
            print(f"\n{_save_on_stop(config, state, saver)}; continue with --resume", file=sys.stderr)
            raise SystemExit(130)
    bar.close()
    wait_for_the_others("experiments.train: the run folder is written")
    return state


def _save_on_stop(config: TrainConfig, state: TrainState, saver: checkpoint.BackgroundSaver) -> str:
    """Save the state a stop found (once the save in flight is done), and say so. Over several
    processes nothing new is saved: the state's last step may wait for a process that
    stopped before it, and with the buffers donated no earlier state is left."""
    saver.wait()
    if jax.process_count() > 1:
        return (f"interrupted: over {jax.process_count()} processes a stop saves nothing new; the last "
                f"checkpoint in {config.out} is kept")
    _check_finite(0.0, state, config.out, saver)
    saver.save(local_replica(state), functools.partial(_write_checkpoints, config, None))
    saver.wait()
    return f"interrupted at step {int(state.step)}: checkpoint saved in {config.out}"


def main(argv: list[str] | None = None) -> None:
    config = parse_config(
        TrainConfig, argv, prog="python -m experiments.train",
        description=__doc__.split("\n\n")[0],
        preset_defaults={
            **{p: {**v, "out": f"runs/{p}"} for p, v in PRESET_TRAINING.items()},
            **{f"{p} --model wrn": {**v, "out": f"runs/{p}-wrn"} for p, v in WRN_TRAINING.items()},
        },
    )
    state = train(config)
    print(f"trained {int(local_replica(state).step)} steps; run folder {resolve(config).out}")


if __name__ == "__main__":
    main()
