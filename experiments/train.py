"""Train a class-conditional score network by maximum likelihood.

    python -m experiments.train --preset digits --out runs/digits

Likelihood weighting with importance-sampled t under the subVP SDE
(SPEC.md §3), Adam with linear warm-up and global-norm clipping, an EMA (with
warm-up) of the parameters, data parallel over every visible device. The run folder gets
`config.json`, `checkpoint.eqx` (model, EMA model, optimiser state, step and
PRNG key; the data order follows from seed and step), `log.jsonl` and sample
grids `samples/step_NNNNNNN.png`. `--resume` continues bit for bit; Ctrl-C
saves a checkpoint first.
"""

import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, UInt8, UInt32
from tqdm import tqdm

import score
from experiments import checkpoint
from experiments.cli import option, parse_config
from experiments.data import load_dataset
from experiments.files import append_lines, read_lines, write_lines
from experiments.images import save_grid, to_pixels
from experiments.parallel import data_parallel
from likelihood.sampling import sample_probability_flow
from sde import SubVPSDE

Preset = Literal["digits", "fashion-mnist", "mnist", "cifar10", "cifar10-deep"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; None means the preset's value (PRESET_TRAINING)."""

    preset: Preset = option("network, data set and training defaults", "digits")
    steps: int | None = option("total optimiser steps")
    batch_size: int = option("images per step, split over the devices", 128)
    seed: int = option("seed of initialisation, data order and noise", 0)
    out: Path | None = option("run folder")
    resume: bool = option("continue the run in --out from its checkpoint", False)
    data: str | None = option("data source: a local folder, 'hub', or None for the default")
    learning_rate: float | None = option("peak Adam learning rate")
    warmup_steps: int | None = option("linear warm-up steps")
    lr_schedule: Literal["constant", "cosine"] | None = option(
        "after warm-up: constant, or cosine decay to 0 at --steps (so a cosine run resumed "
        "with more --steps decays more slowly from there on)"
    )
    ema_decay: float | None = option(
        "EMA rate of the evaluated parameters, after a warm-up: min(rate, (1 + t) / (10 + t))"
    )
    grad_clip: float = option("global-norm gradient clipping", 1.0)
    weighting: Literal["likelihood_is", "likelihood", "none"] = option(
        "time weighting of the loss (SPEC.md §3)", "likelihood_is"
    )
    eps: float = option("smallest training time (score_sde 1e-5, ScoreFlow 1e-2)", 1e-5)
    random_flip: bool | None = option("random horizontal flips")
    checkpoint_every: int = option("steps between checkpoints and sample grids", 1000)
    log_every: int = option("steps between log lines", 50)
    samples_per_class: int = option("samples per label in each grid (0: no grids)", 8)


# The paper's settings for CIFAR-10 (SPEC.md §3); CPU presets after the recipe in CPU_NOTES.md.
PRESET_TRAINING: dict[str, dict] = {
    "digits": dict(steps=3000, learning_rate=2e-3, warmup_steps=200, lr_schedule="cosine",
                   ema_decay=0.999, random_flip=False),
    "mnist": dict(steps=20_000, learning_rate=1e-3, warmup_steps=500, lr_schedule="cosine",
                  ema_decay=0.999, random_flip=False),
    "fashion-mnist": dict(steps=20_000, learning_rate=1e-3, warmup_steps=500, lr_schedule="cosine",
                          ema_decay=0.999, random_flip=True),
    "cifar10": dict(steps=950_000, learning_rate=2e-4, warmup_steps=5000, lr_schedule="constant",
                    ema_decay=0.9999, random_flip=True),
}
PRESET_TRAINING["cifar10-deep"] = PRESET_TRAINING["cifar10"]


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every None with the preset's value."""
    defaults = dict(PRESET_TRAINING[config.preset], out=Path("runs") / config.preset)
    filled = {k: v for k, v in defaults.items() if getattr(config, k) is None}
    return dataclasses.replace(config, **filled)


class TrainState(eqx.Module):
    model: score.ScoreNet
    ema_model: score.ScoreNet
    opt_state: optax.OptState
    step: Int[Array, ""]
    key: UInt32[Array, "..."]  # raw key data: serialisable, unlike typed keys


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam(0.9, 0.999, 1e-8) after global-norm clipping, with linear warm-up (SPEC.md §3)."""
    decay_steps = config.steps if config.lr_schedule == "cosine" else None
    return _optimizer(config.learning_rate, config.warmup_steps, config.lr_schedule, decay_steps,
                      config.grad_clip)


@functools.lru_cache
def _optimizer(learning_rate, warmup_steps, lr_schedule, decay_steps, grad_clip):
    # Cached so that equal settings give the same object, and `train_step`'s
    # compiled code is reused (it is a static argument of the jit).
    if lr_schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, warmup_steps, max(decay_steps, warmup_steps + 1)
        )
    else:
        schedule = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.chain(
        optax.clip_by_global_norm(grad_clip), optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    )


@eqx.filter_jit  # one compilation instead of hundreds of small eager initialisers
def init_state(
    network: score.NetConfig, seed: int, optimizer: optax.GradientTransformation
) -> TrainState:
    model_key, train_key = jax.random.split(jax.random.key(seed))
    model = score.ScoreNet(network, key=model_key)
    return TrainState(
        model=model,
        ema_model=model,
        opt_state=optimizer.init(eqx.filter(model, eqx.is_inexact_array)),
        step=jnp.array(0),
        key=jax.random.key_data(train_key),
    )


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """The settings a training step depends on: its static jit argument."""

    random_flip: bool
    weighting: str
    eps: float
    ema_decay: float

    @classmethod
    def of(cls, config: TrainConfig) -> "StepSettings":
        return cls(config.random_flip, config.weighting, config.eps, config.ema_decay)


@eqx.filter_jit
def train_step(
    state: TrainState,
    images: UInt8[Array, "b h w c"],
    labels: Int[Array, " b"],
    optimizer: optax.GradientTransformation,
    settings: StepSettings,
) -> tuple[TrainState, Float[Array, ""]]:
    """One optimiser step on a batch of uint8 images (sharded or not: XLA partitions it)."""
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    flip_key, loss_key = jax.random.split(step_key)
    x0 = jnp.moveaxis(images.astype(jnp.float32) * (2 / 255) - 1, -1, 1)  # SPEC.md §3, c h w
    if settings.random_flip:
        flip = jax.random.bernoulli(flip_key, 0.5, (x0.shape[0], 1, 1, 1))
        x0 = jnp.where(flip, x0[..., ::-1], x0)

    def objective(model):
        return score.loss(model, SubVPSDE(), x0, labels, key=loss_key,
                          weighting=settings.weighting, eps=settings.eps)

    loss, grads = eqx.filter_value_and_grad(objective)(state.model)
    params = eqx.filter(state.model, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    model = eqx.apply_updates(state.model, updates)
    # EMA warm-up: with a fixed decay d the initial (random) parameters keep weight
    # d^t, 5 % after 3,000 steps at d = 0.999; the warm-up makes that negligible.
    decay = jnp.minimum(settings.ema_decay, (1 + state.step) / (10 + state.step))
    ema_params = jax.tree.map(
        lambda e, p: e + (1 - decay) * (p - e),
        eqx.filter(state.ema_model, eqx.is_inexact_array),
        eqx.filter(model, eqx.is_inexact_array),
    )
    ema_model = eqx.combine(ema_params, state.ema_model)
    return TrainState(model, ema_model, opt_state, state.step + 1, state.key), loss


@functools.lru_cache(maxsize=1)
def _epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int) -> np.ndarray:
    """The examples of `step`: a fresh seeded permutation per epoch, last partial batch dropped."""
    epoch, position = divmod(step, num_examples // batch_size)
    return _epoch_order(seed, epoch, num_examples)[position * batch_size:][:batch_size]


@eqx.filter_jit
def _class_samples(model: score.ScoreNet, labels: Int[Array, " n"], key: PRNGKeyArray):
    config = model.config
    noise_fn = lambda x, t, y: model(x, t, y)
    shape = (config.channels, config.image_size, config.image_size)
    return sample_probability_flow(noise_fn, SubVPSDE(), labels, shape, key=key)


def save_samples(folder: Path, state: TrainState, samples_per_class: int) -> Path:
    """A grid of EMA-model samples, one row per label, from the probability-flow ODE."""
    num_classes = state.ema_model.config.num_classes
    labels = jnp.repeat(jnp.arange(num_classes), samples_per_class)
    step = int(state.step)
    images = _class_samples(state.ema_model, labels, jax.random.fold_in(jax.random.key(0), step))
    pixels = to_pixels(np.asarray(images)).reshape(num_classes, samples_per_class, *images.shape[2:], -1)
    path = folder / "samples" / f"step_{step:07d}.png"
    save_grid(path, pixels, scale=max(1, 64 // pixels.shape[2]))
    return path


def _run_record(config: TrainConfig) -> dict:
    return {"train": checkpoint.to_json(config), "network": checkpoint.to_json(score.PRESETS[config.preset])}


def _start(config: TrainConfig, optimizer) -> TrainState:
    """A fresh state in a new run folder, or the checkpoint of `--resume`."""
    folder, record = config.out, _run_record(config)
    if config.resume:
        ignored = ("train.steps", "train.resume", "train.out")
        checkpoint.check_same_config(folder, record, ignore=ignored)
        checkpoint.save_config(folder, record)  # it now records the steps this run goes to
        return checkpoint.load_state(folder, jax.eval_shape(lambda: init_state(score.PRESETS[config.preset], config.seed, optimizer)))
    if (folder / checkpoint.CHECKPOINT_FILE).exists():
        raise checkpoint.CheckpointError(
            f"{folder / checkpoint.CHECKPOINT_FILE} exists: pass --resume to continue it, or another --out"
        )
    checkpoint.save_config(folder, record)
    return init_state(score.PRESETS[config.preset], config.seed, optimizer)


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint, which a resumed run will write again (and a
    last line cut short by a kill)."""
    write_lines(path, [line for line in read_lines(path) if line["step"] <= step])


def train(config: TrainConfig) -> TrainState:
    """Run (or resume) training to `config.steps`; returns the final state."""
    config = resolve(config)
    network = score.PRESETS[config.preset]
    data = load_dataset(config.preset, "train", source=config.data)
    expected_shape = (network.image_size, network.image_size, network.channels)
    if data.images.shape[1:] != expected_shape:
        raise ValueError(f"preset {config.preset} expects images {expected_shape}, the data has "
                         f"{data.images.shape[1:]}")
    if not 1 <= config.batch_size <= len(data.labels):
        raise ValueError(f"--batch-size {config.batch_size} must lie in [1, {len(data.labels)}], "
                         "the number of training images")

    optimizer = make_optimizer(config)
    settings = StepSettings.of(config)
    replicated, batch_sharding = data_parallel(config.batch_size)
    state = jax.device_put(_start(config, optimizer), replicated)
    log_path = config.out / "log.jsonl"
    _trim_log(log_path, int(state.step))

    step = int(state.step)
    losses, last_time = [], time.perf_counter()
    bar = tqdm(total=config.steps, initial=step, desc=f"train {config.preset}", unit="step",
               dynamic_ncols=True, disable=None)
    try:
        while step < config.steps:
            index = batch_indices(config.seed, step, len(data.labels), config.batch_size)
            batch = jax.device_put((data.images[index], data.labels[index]), batch_sharding)
            state, loss = train_step(state, *batch, optimizer, settings)
            step += 1
            losses.append(loss)
            bar.update()
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                mean_loss = float(np.mean(jax.device_get(losses)))
                line = {"step": step, "loss": mean_loss,
                        "steps_per_second": len(losses) / (now - last_time)}
                append_lines(log_path, [line])
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                losses, last_time = [], now
            if step % config.checkpoint_every == 0 or step == config.steps:
                checkpoint.save_state(config.out, state)
                if config.samples_per_class:
                    save_samples(config.out, state, config.samples_per_class)
    except KeyboardInterrupt:
        checkpoint.save_state(config.out, state)
        bar.close()
        print(f"\ninterrupted at step {int(state.step)}: checkpoint saved in {config.out}; "
              "continue with --resume", file=sys.stderr)
        raise SystemExit(130)
    bar.close()
    return state


def main(argv: list[str] | None = None) -> None:
    config = parse_config(
        TrainConfig, argv, prog="python -m experiments.train",
        description=__doc__.split("\n\n")[0],
        preset_defaults={p: {**v, "out": f"runs/{p}"} for p, v in PRESET_TRAINING.items()},
    )
    state = train(config)
    print(f"trained {int(state.step)} steps; run folder {resolve(config).out}")


if __name__ == "__main__":
    main()
