"""The classifier as one value: "this network, scored this way" (docs/method.md §4.6).

A classifier is a small Module, the way a Diffrax step-size controller is: it
holds the network and every setting that decides its numbers, and answers
one question, the scores of a batch of images under every label. Tables,
attacks and research code all call the same object; a new estimator is a new
classifier, not a new branch in the tables.

Three methods, one per input space, each named so that no input is guessed:

- `scores(pixels, keys)`: integer pixels in [0, levels), `n h w c`, as the data
  sets store them;
- `model_scores(x, keys)`: model-space inputs in `n c h w`, used as given
  (interpolations that share one dequantisation noise);
- `image_scores(image, key)`: ONE image of continuous intensities in [0, 1],
  `c h w` (pixel / (levels - 1)), differentiable: the space of PGD's radii.

`keys` hold one PRNG key per image: its dequantisation noise and probes come
from it, so an image gets the same draws wherever it is evaluated.
"""

from collections.abc import Callable
from typing import ClassVar, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Bool, Float, Int, Integer, PRNGKeyArray, PyTree

from classify.decision import predict
from classify.likelihoods import LabelNoiseFn, batch_class_log_likelihoods, network_classes
from classify.shortlist import shortlist_class_log_likelihoods
from likelihood import (DiffusionTime, ExactTrace, Hutchinson, OneSolve, TimeVariable, VmappedSolves,
                        channels_first, to_model_space, typed_keys)
from sde import AbstractSDE, SubVPSDE

Kind = Literal["likelihood", "elbo", "logits"]
# The kinds whose scores are log-densities in nats (exact, or a lower bound), with bits/dim.
LOG_DENSITY_KINDS = ("likelihood", "elbo")


class Scores(eqx.Module):
    """What a classifier says of n images: a score per label, the prediction, the cost.

    `scores` are log p(x | y) in nats for a likelihood classifier, logits for a
    discriminative one (the classifier's `kind` says which). `nfe` counts the
    solver's function evaluations each image took part in (0 without a solver);
    `passes` counts network passes on one (image, label) input, forward passes
    and JVPs alike, so that settings with other probes, labels or passes compare.
    `shortlisted` marks, for a shortlist, the scores of its exact pass (the others
    are the first pass's); None when every score comes from the same estimator.
    """

    scores: Float[Array, "n k"]
    prediction: Int[Array, " n"]
    nfe: Int[Array, " n"]
    passes: Int[Array, " n"]
    shortlisted: Bool[Array, "n k"] | None = None


def check_pixels(pixels, shape: tuple[int, int, int] | None, method: str) -> Array:
    """Integer `n h w c` pixels, or an error that says what the input was instead."""
    pixels = jnp.asarray(pixels)
    if not jnp.issubdtype(pixels.dtype, jnp.integer):
        raise TypeError(
            f"{method} takes integer pixels in [0, levels) (n h w c, as the data sets store them), "
            f"got dtype {pixels.dtype}. Continuous images in [0, 1] go to image_scores, model-space "
            "inputs in [-1, 1] to model_scores")
    if shape is not None and pixels.shape[1:] != shape:
        h, w, c = shape
        layout = " (that is c h w)" if pixels.shape[1:] == (c, h, w) and c != h else ""
        raise ValueError(f"{method} expected pixels of shape (n, {h}, {w}, {c}), n h w c; got "
                         f"{pixels.shape}{layout}")
    return pixels


def check_keys(keys, num_images: int) -> PRNGKeyArray:
    keys = typed_keys(keys)
    if keys.shape != (num_images,):
        raise ValueError(f"expected one key per image, shape ({num_images},), got {keys.shape}")
    return keys


def pixel_shape(network) -> tuple[int, int, int] | None:
    config = getattr(network, "config", None)
    if config is None:
        return None
    return config.image_size, config.image_size, config.channels


class LikelihoodClassifier(eqx.Module):
    """argmax_y log p(x | y), the log-likelihood from the probability-flow ODE (§4).

    `network(x, t, y)` predicts the noise on one `c h w` input (a `score.ScoreNet`,
    or any function of that signature with `num_classes` given). Every label of
    an image shares its dequantisation noise and probes unless `share_noise` is
    off. `shortlist`: solve only that many best labels of a first pass with one
    probe at rtol = atol = `first_pass_tolerance`, or, given `first_pass_steps`, on a
    fixed grid of that many Heun steps (early elimination, §4.8). `steps`: solve on a fixed
    grid of that many equal steps of `solver` in `time_variable` instead (rtol, atol and
    `dt0` then do nothing): a cheap, biased solve, the first pass alone. `dt0`: the
    solver's first step (None: diffrax's choice, `likelihood.batch_log_likelihood`).
    `norm`: the step-size controller's error norm (§4.3; `likelihood.log_p_norm` controls
    the log p entries alone). `time_variable`: the variable the ODE is solved in (§4.3).
    """

    kind: ClassVar[Kind] = "likelihood"
    deterministic: ClassVar[bool] = False

    network: LabelNoiseFn
    sde: AbstractSDE
    divergence: Hutchinson | ExactTrace
    solver: diffrax.AbstractRungeKutta
    batching: OneSolve | VmappedSolves
    time_variable: TimeVariable
    norm: Callable[[PyTree], Array] = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    share_noise: bool = eqx.field(static=True)
    shortlist: int | None = eqx.field(static=True)
    first_pass_tolerance: float = eqx.field(static=True)
    first_pass_steps: int | None = eqx.field(static=True)
    steps: int | None = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)

    def __init__(
        self,
        network: LabelNoiseFn,
        *,
        sde: AbstractSDE = SubVPSDE(),
        divergence: Hutchinson | ExactTrace = Hutchinson(1),
        rtol: float = 1e-5,
        atol: float = 1e-5,
        t0: float = 1e-5,
        solver: diffrax.AbstractRungeKutta = diffrax.Dopri5(),
        batching: OneSolve | VmappedSolves = OneSolve(),
        share_noise: bool = True,
        shortlist: int | None = None,
        first_pass_tolerance: float = 1e-3,
        first_pass_steps: int | None = None,
        steps: int | None = None,
        levels: int = 256,
        num_classes: int | None = None,
        dt0: float | None = None,
        norm: Callable[[PyTree], Array] = optx.rms_norm,
        time_variable: TimeVariable = DiffusionTime(),
    ):
        self.network, self.sde, self.divergence, self.norm = network, sde, divergence, norm
        self.time_variable = time_variable
        self.rtol, self.atol, self.t0, self.solver, self.batching = rtol, atol, t0, solver, batching
        self.share_noise, self.shortlist, self.first_pass_tolerance = share_noise, shortlist, first_pass_tolerance
        self.first_pass_steps, self.steps = first_pass_steps, steps
        self.levels, self.dt0 = levels, dt0
        self.num_classes = network_classes(network, num_classes)
        if shortlist is not None and not 1 <= shortlist <= self.num_classes:
            raise ValueError(f"shortlist must lie in [1, {self.num_classes}], got {shortlist}")
        if first_pass_steps is not None and (shortlist is None or first_pass_steps < 1):
            raise ValueError(f"first_pass_steps ({first_pass_steps}) needs a shortlist and at least one step")
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")

    def _options(self) -> dict:
        """The keywords of `classify.batch_class_log_likelihoods` that this classifier fixes."""
        return dict(divergence=self.divergence, share_noise=self.share_noise, batching=self.batching,
                    rtol=self.rtol, atol=self.atol, t0=self.t0, solver=self.solver, levels=self.levels,
                    dt0=self.dt0, norm=self.norm, time_variable=self.time_variable, steps=self.steps)

    def _passes_per_evaluation(self, x: Float[Array, "n c h w"]) -> int:
        """Network passes per (image, label) at one function evaluation: the forward and a JVP
        (or VJP) per probe."""
        probes = jax.eval_shape(lambda key: self.divergence.draw_probes(key, x.shape[1:]), jax.random.key(0))
        return 1 + probes.shape[0]

    def _log_likelihoods(self, x: Array, keys: PRNGKeyArray, inputs: str) -> Scores:
        K = self.num_classes
        if self.shortlist is None:
            log_probs, stats = batch_class_log_likelihoods(
                self.network, self.sde, x, keys=keys, num_classes=K, inputs=inputs, **self._options())
            nfe = jnp.max(stats.num_function_evaluations, axis=1)
            return Scores(log_probs, predict(log_probs), nfe, nfe * K * self._passes_per_evaluation(x))
        tolerance = self.first_pass_tolerance
        first_pass = dict(divergence=Hutchinson(1), rtol=tolerance, atol=tolerance)
        if self.first_pass_steps is not None:
            # Heun, the cheapest pair per step: a fixed grid of a few steps biases every label's
            # log p alike (shared noise and probes), so the ranking survives (§4.8).
            first_pass |= dict(solver=diffrax.Heun(), steps=self.first_pass_steps)
        result = shortlist_class_log_likelihoods(
            self.network, self.sde, x, keys=keys, num_classes=K, keep=self.shortlist, inputs=inputs,
            first_pass=first_pass, **self._options(),
        )
        first_nfe = jnp.max(result.first_stats.num_function_evaluations, axis=1)
        exact_nfe = jnp.max(result.exact_stats.num_function_evaluations, axis=1)
        passes = first_nfe * K * 2 + exact_nfe * self.shortlist * self._passes_per_evaluation(x)
        return Scores(result.log_probs, result.prediction, first_nfe + exact_nfe, passes, result.shortlisted)

    @eqx.filter_jit
    def scores(self, pixels: Integer[Array, "n h w c"], keys: PRNGKeyArray) -> Scores:
        """log p(x | y) of n images of integer pixels under every label, dequantised with
        noise from `keys` (one per image; the probes come from them too)."""
        pixels = check_pixels(pixels, pixel_shape(self.network), "LikelihoodClassifier.scores")
        return self._log_likelihoods(channels_first(pixels), check_keys(keys, len(pixels)), "pixels")

    @eqx.filter_jit
    def model_scores(self, x: Float[Array, "n c h w"], keys: PRNGKeyArray) -> Scores:
        """log p(x | y) of n model-space inputs, used as given (the probes come from `keys`)."""
        return self._log_likelihoods(jnp.asarray(x), check_keys(keys, len(x)), "model")

    def image_scores(
        self,
        image: Float[Array, "c h w"],
        key: PRNGKeyArray,
        *,
        adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint(),
    ) -> tuple[Float[Array, " k"], Int[Array, ""]]:
        """log p(x | y) for every label of ONE image of intensities in [0, 1], and its function
        evaluations: a deterministic, differentiable function of `image` for a given `key`
        (its dequantisation noise, then its probes). `adjoint` is how derivatives go
        through the solve (`attacks.gradient`)."""
        noise_key, probe_key = jax.random.split(typed_keys(key))
        noise = jax.random.uniform(noise_key, image.shape)
        x = to_model_space((self.levels - 1) * image, noise, self.levels)
        log_probs, stats = batch_class_log_likelihoods(
            self.network, self.sde, x[None], keys=probe_key[None], num_classes=self.num_classes,
            inputs="model", adjoint=adjoint, **self._options())
        return log_probs[0], jnp.max(stats.num_function_evaluations)


class LogitClassifier(eqx.Module):
    """argmax_y of a discriminative network's logits (the WideResNet baseline, §8).

    `network(x)` maps one `c h w` model-space input to K logits. Pixels enter at
    their bins' midpoints, the mean of the dequantised inputs it was trained on.
    Deterministic: the keys are accepted and ignored.
    """

    kind: ClassVar[Kind] = "logits"
    deterministic: ClassVar[bool] = True

    network: Callable[[Float[Array, "c h w"]], Float[Array, " k"]]
    levels: int = eqx.field(static=True, default=256)

    @property
    def num_classes(self) -> int:
        return self.network.config.num_classes

    def _logits(self, x: Float[Array, "n c h w"]) -> Scores:
        logits = jax.vmap(self.network)(x)
        zeros = jnp.zeros(len(x), jnp.int32)
        return Scores(logits, predict(logits), zeros, zeros + 1)

    @eqx.filter_jit
    def scores(self, pixels: Integer[Array, "n h w c"], keys: PRNGKeyArray | None = None) -> Scores:
        """The logits of n images of integer pixels, fed as their bins' midpoints."""
        pixels = check_pixels(pixels, pixel_shape(self.network), "LogitClassifier.scores")
        return self._logits(channels_first(to_model_space(pixels, 0.5, self.levels)))

    @eqx.filter_jit
    def model_scores(self, x: Float[Array, "n c h w"], keys: PRNGKeyArray | None = None) -> Scores:
        return self._logits(jnp.asarray(x))

    def image_scores(self, image: Float[Array, "c h w"], key: PRNGKeyArray | None = None, *,
                     adjoint=None) -> tuple[Float[Array, " k"], Int[Array, ""]]:
        """The logits of ONE image of intensities in [0, 1] at the bins' midpoints, and 0
        function evaluations."""
        return self.network(to_model_space((self.levels - 1) * image, 0.5, self.levels)), jnp.int32(0)
