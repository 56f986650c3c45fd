"""Train a class-conditional score network by maximum likelihood, or the WideResNet baseline.

    python -m experiments.train --preset digits --out runs/digits
    python -m experiments.train --preset digits --model wrn --out runs/digits-wrn

Score networks (`--model score`, the default): likelihood weighting with
importance-sampled t under the subVP SDE (docs/method.md §3), Adam with linear
warm-up and global-norm clipping, an EMA (with warm-up) of the parameters.
WideResNets (`--model wrn`, `baseline`): cross-entropy on dequantised images
with random flips (where the preset flips) and random reflection-padded crops,
SGD with Nesterov momentum 0.9 and weight decay 5e-4, lr 0.1 with cosine decay,
no EMA (docs/method.md §8). Both data parallel over every visible device. The run
folder gets `config.json`, `checkpoint.eqx` (model, EMA model, optimiser
state, step and PRNG key; the data order follows from seed and step),
`log.jsonl` and, for score networks, sample grids `samples/step_NNNNNNN.png`.
`--resume` continues bit for bit; Ctrl-C saves a checkpoint first.
"""

import dataclasses
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
from experiments.files import append_lines, locked, read_lines, write_lines
from experiments.parallel import data_parallel
from experiments.progress import progress
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
    if config.resume:
        saved = checkpoint.load_config(folder).get("train", {})
        # Options added after the run was made are fine at their defaults (its behaviour then).
        added_later = tuple(f"train.{f.name}" for f in dataclasses.fields(TrainConfig)
                            if f.name not in saved and getattr(config, f.name) == f.default)
        # How often to save changes no number of the run.
        # Nor does where it runs (a resume on another machine), which the record tells.
        ignored = ("train.steps", "train.resume", "train.out", "train.checkpoint_minutes", "train.device",
                   "train.compilation_cache",
                   *backend.RECORD_KEYS, *added_later)
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


def _check_finite(loss: float, state: TrainState, folder: Path) -> None:
    """Raise before a non-finite loss is logged or a non-finite state saved as a checkpoint."""
    if not (np.isfinite(loss) and bool(_all_finite(eqx.filter(state, eqx.is_inexact_array)))):
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

    with locked(config.out):
        return _train(config, data)


def _train(config: TrainConfig, data: Split) -> TrainState:
    optimizer = make_optimizer(config)
    settings = StepSettings.of(config)
    replicated, batch_sharding = data_parallel(config.batch_size)
    state = jax.device_put(_start(config, optimizer), replicated)
    log_path = config.out / "log.jsonl"
    _trim_log(log_path, int(state.step))

    step = int(state.step)
    losses, last_time = [], time.perf_counter()
    last_save = last_time
    samples_per_class = config.samples_per_class if MODELS[config.model].samples else 0
    bar = progress(total=config.steps, initial=step, desc=f"train {config.preset} {config.model}", unit="step")
    with stops_as_interrupt() as stop:
        try:
            while step < config.steps:
                stop.check()
                index = batch_indices(config.seed, step, len(data.labels), config.batch_size)
                batch = jax.device_put((data.images[index], data.labels[index]), batch_sharding)
                state, loss = train_step(state, *batch, optimizer, settings)
                step += 1
                losses.append(loss)
                bar.update()
                if step % config.log_every == 0 or step == config.steps:
                    now = time.perf_counter()
                    mean_loss = float(np.mean(jax.device_get(losses)))
                    _check_finite(mean_loss, state, config.out)
                    line = {"step": step, "loss": mean_loss,
                            "steps_per_second": len(losses) / (now - last_time)}
                    append_lines(log_path, [line])
                    bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
                    losses, last_time = [], now
                due = step % config.checkpoint_every == 0 or step == config.steps
                if due or time.perf_counter() - last_save >= 60 * config.checkpoint_minutes:
                    _check_finite(float(np.mean(jax.device_get(losses))) if losses else 0.0, state, config.out)
                    checkpoint.save_state(config.out, state)
                    last_save = time.perf_counter()
                if due and config.keep_checkpoints:
                    checkpoint.save_state(config.out, state, checkpoint.kept_name(step))
                if due and samples_per_class:
                    pictures.training_samples(config.out, state.ema_model, step, samples_per_class,
                                              data.class_names)
        except KeyboardInterrupt:
            bar.close()
            _check_finite(0.0, state, config.out)
            checkpoint.save_state(config.out, state)
            print(f"\ninterrupted at step {int(state.step)}: checkpoint saved in {config.out}; "
                  "continue with --resume", file=sys.stderr)
            raise SystemExit(130)
    bar.close()
    return state


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
    print(f"trained {int(state.step)} steps; run folder {resolve(config).out}")


if __name__ == "__main__":
    main()
