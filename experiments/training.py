"""What a training run is: its settings and presets, its state, optimisers and objectives,
and one optimiser step. `experiments.train` runs the loop; `experiments.runs` reads a run back.
"""

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, UInt8, UInt32

import baseline
import score
from experiments.backend import BackendOptions
from experiments.cli import option
from likelihood import channels_first, rescale, to_model_space
from sde import SubVPSDE

Preset = Literal["digits", "fashion-mnist", "mnist", "cifar10", "cifar10-deep"]


@dataclasses.dataclass(frozen=True)
class TrainConfig(BackendOptions):
    """Every setting of a training run; None means the value of the (model, preset) in
    PRESET_TRAINING (score networks) or WRN_TRAINING (WideResNets)."""

    preset: Preset = option("network, data set and training defaults", "digits")
    model: Literal["score", "wrn"] = option(
        "score network (the generative classifier) or WideResNet (the discriminative baseline)", "score"
    )
    wrn_width: int | None = option(
        "widening factor k of the WideResNet instead of the preset's (the paper's baseline: "
        "--preset cifar10 --wrn-width 12, WRN-28-12)", at_least=1
    )
    nf: int | None = option("score network: channels of its first level instead of the preset's", at_least=1)
    ch_mult: str | None = option("score network: comma-separated channel multipliers per level (e.g. 1,2,2)")
    num_res_blocks: int | None = option("score network: residual blocks per level", at_least=1)
    steps: int | None = option("total optimiser steps", at_least=1)
    batch_size: int = option("images per step, split over the devices", 128, at_least=1)
    seed: int = option("seed of initialisation, data order and noise", 0)
    out: Path | None = option("run folder")
    resume: bool = option("continue the run in --out from its checkpoint", False)
    data: str | None = option("data source: a local folder or 'hub' (default: the preset's)")
    learning_rate: float | None = option("peak learning rate (Adam, or SGD for a WRN)", above=0)
    warmup_steps: int | None = option("linear warm-up steps", at_least=0)
    lr_schedule: Literal["constant", "cosine"] | None = option(
        "after warm-up: constant, or cosine decay to 0 at --steps (so a cosine run resumed "
        "with more --steps decays more slowly from there on)"
    )
    ema_decay: float | None = option(
        "EMA rate of the evaluated parameters, after a warm-up: min(rate, (1 + t) / (10 + t)); "
        "0: no EMA, the trained parameters are the evaluated ones"
    )
    grad_clip: float | None = option("global-norm gradient clipping (0: none)", at_least=0)
    weighting: Literal["likelihood_is", "likelihood", "none", "mixture"] | None = option(
        "time weighting of the loss (docs/method.md §3)"
    )
    eps: float = option("smallest training time (score_sde 1e-5, ScoreFlow 1e-2)", 1e-5, above=0)
    random_flip: bool | None = option("random horizontal flips")
    checkpoint_every: int = option("steps between checkpoints and sample grids", 1000, at_least=1)
    checkpoint_minutes: float = option(
        "also save the checkpoint (no grid) once this many minutes have passed since the last "
        "save, so that a kill loses at most that much (a 28x28 CPU step takes about a second)", 10.0, at_least=0)
    keep_checkpoints: bool = option(
        "also keep every checkpoint as checkpoints/step_N.eqx (experiments.figure1 draws the "
        "run's path through training from them)", False)
    keep_last: int = option(
        "of the kept checkpoints, keep only the last this many (0: all), and those of --keep-every",
        0, at_least=0)
    keep_every: int = option(
        "with --keep-last: also keep the kept checkpoints at multiples of this many steps (0: none)",
        0, at_least=0)
    log_every: int = option("steps between log lines", 50, at_least=1)
    samples_per_class: int = option("samples per label in each grid (0: no grids; a WRN has none)", 8, at_least=0)


# Score networks: the paper's settings for CIFAR-10 (docs/method.md §3); CPU presets after the
# digits recipe of docs/cpu.md.
PRESET_TRAINING: dict[str, dict] = {
    "digits": dict(steps=3000, learning_rate=2e-3, warmup_steps=200, lr_schedule="cosine",
                   ema_decay=0.999, random_flip=False, grad_clip=1.0, weighting="likelihood_is"),
    # 28x28: 7,000 steps of 128 (15 epochs) at about 1.2 s each, some 2.4 hours on 2 cores. No
    # flips: Fashion-MNIST's shoes all point one way, and a mirrored copy only costs capacity.
    "mnist": dict(steps=7000, learning_rate=2e-3, warmup_steps=200, lr_schedule="cosine",
                  ema_decay=0.999, random_flip=False, grad_clip=1.0, weighting="likelihood_is"),
    # The recipe study (results/fashion-mnist/study/README.md): the unweighted loss beat the
    # likelihood weighting by 21 points at equal steps. 10,000 steps of the nf 32 network are
    # about 8 hours on 2 cores.
    "fashion-mnist": dict(steps=10_000, learning_rate=2e-3, warmup_steps=200, lr_schedule="cosine",
                          ema_decay=0.999, random_flip=False, grad_clip=1.0, weighting="none"),
    "cifar10": dict(steps=950_000, learning_rate=2e-4, warmup_steps=5000, lr_schedule="constant",
                    ema_decay=0.9999, random_flip=True, grad_clip=1.0, weighting="likelihood_is"),
}
PRESET_TRAINING["cifar10-deep"] = PRESET_TRAINING["cifar10"]

# WideResNets (docs/method.md §8): lr 0.1 with cosine decay, no warm-up, clipping or EMA; batch 128.
# digits: 500 steps (45 epochs), 98.6, 98.6 and 98.3 % on its 360 test images for seeds 0, 1,
# 2 in 67-74 s on 2 busy cores; 28x28: about 21 and 43 epochs (accuracy not measured yet);
# CIFAR-10: the WRN paper's 200 epochs.
_WRN = dict(learning_rate=0.1, warmup_steps=0, lr_schedule="cosine", ema_decay=0.0, grad_clip=0.0)
WRN_TRAINING: dict[str, dict] = {
    "digits": dict(_WRN, steps=500, random_flip=False),
    "mnist": dict(_WRN, steps=10_000, random_flip=False),
    "fashion-mnist": dict(_WRN, steps=20_000, random_flip=True),
    "cifar10": dict(_WRN, steps=78_000, random_flip=True),
}
WRN_TRAINING["cifar10-deep"] = WRN_TRAINING["cifar10"]


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every None with the (model, preset)'s value."""
    if config.wrn_width is not None and config.model != "wrn":
        raise ValueError(f"--wrn-width applies to --model wrn, not {config.model}")
    if (config.keep_last or config.keep_every) and not config.keep_checkpoints:
        raise ValueError("--keep-last and --keep-every choose among the kept checkpoints: add --keep-checkpoints")
    if config.keep_every and not config.keep_last:
        raise ValueError("--keep-every keeps checkpoints that --keep-last would drop: give --keep-last too")
    if config.keep_every % config.checkpoint_every:
        raise ValueError(f"--keep-every {config.keep_every} keeps multiples of it among the checkpoints of "
                         f"--checkpoint-every {config.checkpoint_every}, which has none but the last: give "
                         "a multiple of --checkpoint-every")
    chosen = _score_network_options(config)
    if chosen and config.model != "score":
        raise ValueError(f"--{next(iter(chosen)).replace('_', '-')} applies to --model score, not {config.model}")
    suffix = "" if config.model == "score" else f"-{config.model}"
    defaults = dict(MODELS[config.model].training[config.preset], out=Path("runs") / (config.preset + suffix))
    filled = {k: v for k, v in defaults.items() if getattr(config, k) is None}
    return dataclasses.replace(config, **filled)


Network = score.ScoreNet | baseline.WideResNet
NetworkConfig = score.NetConfig | baseline.WRNConfig


class TrainState(eqx.Module):
    model: Network
    ema_model: Network  # the evaluated model: `model` itself when the EMA is off
    opt_state: optax.OptState
    step: Int[Array, ""]
    key: UInt32[Array, "..."]  # raw key data: serialisable, unlike typed keys


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An optimiser's settings as a value: equal settings are equal (and hash alike), so the
    compiled `train_step` and `init_state`, which take it as a static argument, are reused;
    `transformation()` builds the optax chain inside them."""

    kind: Literal["adam", "sgd_nesterov"]
    learning_rate: float
    warmup_steps: int
    lr_schedule: Literal["constant", "cosine"]
    decay_steps: int | None
    grad_clip: float

    def schedule(self) -> optax.Schedule:
        """Linear warm-up from 0, then constant or cosine decay to 0 at `decay_steps`."""
        if self.lr_schedule == "cosine":
            return optax.warmup_cosine_decay_schedule(
                0.0, self.learning_rate, self.warmup_steps, max(self.decay_steps, self.warmup_steps + 1))
        if self.warmup_steps == 0:  # optax's linear schedule over 0 steps stays at its start, 0
            return optax.constant_schedule(self.learning_rate)
        return optax.linear_schedule(0.0, self.learning_rate, self.warmup_steps)

    def transformation(self) -> optax.GradientTransformation:
        """Global-norm clipping (if any), then Adam(0.9, 0.999, 1e-8) (docs/method.md §3.6), or
        SGD with Nesterov momentum 0.9 and weight decay 5e-4 on every parameter (§8.4). The
        decay is added to the gradient, as torch's SGD `weight_decay` in the WRN authors'
        code does (coupled L2, not AdamW-style decoupled decay)."""
        clipping = [optax.clip_by_global_norm(self.grad_clip)] if self.grad_clip else []
        if self.kind == "adam":
            return optax.chain(*clipping, optax.adam(self.schedule(), b1=0.9, b2=0.999, eps=1e-8))
        return optax.chain(*clipping, optax.add_decayed_weights(5e-4),
                           optax.sgd(self.schedule(), momentum=0.9, nesterov=True))


def make_optimizer(config: TrainConfig) -> Optimizer:
    """The model's optimiser (`ModelKind.optimizer`) with the run's schedule."""
    decay_steps = config.steps if config.lr_schedule == "cosine" else None
    return Optimizer(MODELS[config.model].optimizer, config.learning_rate, config.warmup_steps,
                     config.lr_schedule, decay_steps, config.grad_clip)


_NETWORKS = {score.NetConfig: score.ScoreNet, baseline.WRNConfig: baseline.WideResNet}


@eqx.filter_jit  # one compilation instead of hundreds of small eager initialisers
def init_state(network: NetworkConfig, seed: int, optimizer: Optimizer) -> TrainState:
    model_key, train_key = jax.random.split(jax.random.key(seed))
    model = _NETWORKS[type(network)](network, key=model_key)
    return TrainState(
        model=model,
        ema_model=model,
        opt_state=optimizer.transformation().init(eqx.filter(model, eqx.is_inexact_array)),
        step=jnp.zeros((), jnp.int32),  # strongly typed, as a loaded one is: one compiled step for both
        key=jax.random.key_data(train_key),
    )


def random_flip(x: Float[Array, "b c h w"], key: PRNGKeyArray) -> Float[Array, "b c h w"]:
    """Each image mirrored left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
    return jnp.where(flip, x[..., ::-1], x)


@dataclasses.dataclass(frozen=True)
class ScoreMatching:
    """score.loss under the subVP SDE on x0 = 2 k / 255 - 1, no dequantisation (docs/method.md §3)."""

    random_flip: bool
    weighting: str
    eps: float

    @classmethod
    def of(cls, config: TrainConfig) -> "ScoreMatching":
        return cls(config.random_flip, config.weighting, config.eps)

    def __call__(self, model: score.ScoreNet, images: UInt8[Array, "b h w c"], labels: Int[Array, " b"],
                 key: PRNGKeyArray) -> Float[Array, ""]:
        flip_key, loss_key = jax.random.split(key)
        x0 = channels_first(rescale(images))
        if self.random_flip:
            x0 = random_flip(x0, flip_key)
        return score.loss(model, SubVPSDE(), x0, labels, key=loss_key, weighting=self.weighting, eps=self.eps)


@dataclasses.dataclass(frozen=True)
class CrossEntropy:
    """baseline.loss on dequantised images, randomly flipped and cropped (docs/method.md §8).

    The crops pad by `crop_padding` pixels: image_size // 8, the WRN paper's 4 at
    32x32, 3 at 28x28 and 1 at 8x8.
    """

    random_flip: bool
    crop_padding: int

    @classmethod
    def of(cls, config: TrainConfig) -> "CrossEntropy":
        return cls(config.random_flip, network_config(config).image_size // 8)

    def __call__(self, model: baseline.WideResNet, images: UInt8[Array, "b h w c"], labels: Int[Array, " b"],
                 key: PRNGKeyArray) -> Float[Array, ""]:
        noise_key, flip_key, crop_key, dropout_key = jax.random.split(key, 4)
        # Dequantised as the likelihood sees its inputs (the paper's WRN was trained with the noise).
        x = channels_first(to_model_space(images, jax.random.uniform(noise_key, images.shape)))
        if self.random_flip:
            x = random_flip(x, flip_key)
        x = baseline.random_crop(x, self.crop_padding, key=crop_key)
        return baseline.loss(model, x, labels, key=dropout_key)


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """The settings a training step depends on: its static jit argument."""

    objective: ScoreMatching | CrossEntropy
    ema_decay: float

    @classmethod
    def of(cls, config: TrainConfig) -> "StepSettings":
        return cls(MODELS[config.model].objective(config), config.ema_decay)


# The state is donated, so that XLA updates the parameters and optimiser moments in place
# instead of holding two copies. The batch is not: eqx.filter_jit donates every argument or
# all but the first, and a donated batch, of no use to XLA, was deleted by a WideResNet step
# on 2 devices. jax.jit suffices: every leaf of the state is an array.
@functools.partial(jax.jit, donate_argnums=0, static_argnums=(3, 4))
def train_step(
    state: TrainState,
    images: UInt8[Array, "b h w c"],
    labels: Int[Array, " b"],
    optimizer: Optimizer,
    settings: StepSettings,
) -> tuple[TrainState, Float[Array, ""]]:
    """One optimiser step on a batch of uint8 images (sharded or not: XLA partitions it).
    `state` is donated: use the returned one, not it, afterwards."""
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    loss, grads = eqx.filter_value_and_grad(settings.objective)(state.model, images, labels, step_key)
    params = eqx.filter(state.model, eqx.is_inexact_array)
    updates, opt_state = optimizer.transformation().update(grads, state.opt_state, params)
    model = eqx.apply_updates(state.model, updates)
    if settings.ema_decay == 0:
        ema_model = model
    else:
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


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """What `--model` decides: the networks, the training defaults, the objective, the
    optimiser, and whether the model can draw sample grids."""

    networks: dict[str, NetworkConfig]
    training: dict[str, dict]
    objective: Callable[[TrainConfig], ScoreMatching | CrossEntropy]
    optimizer: Literal["adam", "sgd_nesterov"]
    samples: bool


MODELS: dict[str, ModelKind] = {
    "score": ModelKind(score.PRESETS, PRESET_TRAINING, ScoreMatching.of, "adam", samples=True),
    "wrn": ModelKind(baseline.PRESETS, WRN_TRAINING, CrossEntropy.of, "sgd_nesterov", samples=False),
}


def network_config(config: TrainConfig) -> NetworkConfig:
    """The network of the run: the (model, preset)'s, with `--wrn-width` (or the score
    network's `--nf`, `--ch-mult`, `--num-res-blocks`) where given."""
    network = MODELS[config.model].networks[config.preset]
    if config.wrn_width is not None:
        network = dataclasses.replace(network, width=config.wrn_width)
    return dataclasses.replace(network, **_score_network_options(config))


def _score_network_options(config: TrainConfig) -> dict:
    """The score network's fields that the command line sets (`--nf`, `--ch-mult`, ...)."""
    chosen = {"nf": config.nf, "num_res_blocks": config.num_res_blocks,
              "ch_mult": None if config.ch_mult is None else tuple(int(m) for m in config.ch_mult.split(","))}
    return {name: value for name, value in chosen.items() if value is not None}


@functools.lru_cache(maxsize=1)  # one permutation per epoch, not one per step
def _epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int) -> np.ndarray:
    """The examples of `step`: a fresh seeded permutation per epoch, last partial batch dropped."""
    epoch, position = divmod(step, num_examples // batch_size)
    return _epoch_order(seed, epoch, num_examples)[position * batch_size:][:batch_size]
