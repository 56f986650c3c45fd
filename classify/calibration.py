"""Calibration of p(y | x) = softmax_y(score / T): expected calibration error, reliability, and
the temperature T that fits held-out images best (docs/method.md §4.12)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int


def probabilities(scores: Float[ArrayLike, "n k"], temperature: float = 1.0) -> Float[Array, "n k"]:
    """softmax(scores / T) per image: the posterior under a uniform prior at T = 1 (§4.6)."""
    return jax.nn.softmax(jnp.asarray(scores) / temperature, axis=-1)


def reliability(probs: Float[ArrayLike, "n k"], labels: Int[ArrayLike, " n"], bins: int = 10
                ) -> dict[str, Float[Array, " bins"]]:
    """Per bin of the top probability (equal widths on [0, 1]): the images in it, their mean
    confidence and their accuracy (0 for an empty bin)."""
    probs, labels = jnp.asarray(probs), jnp.asarray(labels)
    confidence, right = jnp.max(probs, axis=1), jnp.argmax(probs, axis=1) == labels
    which = jnp.clip((confidence * bins).astype(jnp.int32), 0, bins - 1)
    count = jnp.zeros(bins).at[which].add(1.0)
    mean = lambda values: jnp.zeros(bins).at[which].add(values) / jnp.maximum(count, 1)
    return {"count": count, "confidence": mean(confidence), "accuracy": mean(right.astype(jnp.float32))}


def expected_calibration_error(probs: Float[ArrayLike, "n k"], labels: Int[ArrayLike, " n"],
                               bins: int = 10) -> Float[Array, ""]:
    """sum over bins of (images in the bin / n) |accuracy - confidence|."""
    table = reliability(probs, labels, bins)
    return jnp.sum(table["count"] * jnp.abs(table["accuracy"] - table["confidence"])) / jnp.sum(table["count"])


def negative_log_likelihood(scores: Float[ArrayLike, "n k"], labels: Int[ArrayLike, " n"],
                            temperature: float | Float[Array, ""]) -> Float[Array, ""]:
    """Mean -log softmax(scores / T)[label]."""
    log_probs = jax.nn.log_softmax(jnp.asarray(scores) / temperature, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, jnp.asarray(labels)[:, None], axis=1))


def fit_temperature(scores: Float[ArrayLike, "n k"], labels: Int[ArrayLike, " n"]) -> float:
    """The T in [1e-2, 1e4] (a log-spaced grid of 601 values, 1.6 % apart) of least
    `negative_log_likelihood`: one parameter, so a grid is exact enough and cannot diverge."""
    grid = jnp.logspace(-2, 4, 601)
    losses = jax.vmap(lambda t: negative_log_likelihood(scores, labels, t))(grid)
    return float(grid[jnp.argmin(losses)])


def cross_fitted_probabilities(scores: Float[ArrayLike, "n k"], labels: Int[ArrayLike, " n"]
                               ) -> tuple[Float[Array, "n k"], list[float]]:
    """Temperature-scaled probabilities where each image's T is fitted on the OTHER half of the
    images (even and odd positions): out-of-sample, with no images beyond these. Returns them
    and the two temperatures (fitted on the even half, on the odd half)."""
    scores, labels = jnp.asarray(scores), jnp.asarray(labels)
    halves = [jnp.arange(len(labels)) % 2 == parity for parity in (0, 1)]
    temperatures = [fit_temperature(scores[half], labels[half]) for half in halves]
    probs = jnp.where(halves[0][:, None], probabilities(scores, temperatures[1]), probabilities(scores, temperatures[0]))
    return probs, temperatures
