"""From class log-likelihoods to predictions and batch summaries (docs/method.md §4.6).

All functions take log p(x | y) (or logits) with the labels on the last axis
and assume a uniform class prior. A NaN score is an error, never a prediction.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from classify.likelihoods import checked_labels
from likelihood import bits_per_dim


def predict(log_probs: Float[Array, "*b k"]) -> Int[Array, "*b"]:
    """argmax_y log p(x | y); raises on a NaN score (argmax would pick its label)."""
    log_probs = jnp.asarray(log_probs)
    # The check rides on a scalar zero: on the scores it would pin a sharded batch to one device.
    checked_zero = eqx.error_if(jnp.zeros((), jnp.int32), jnp.any(jnp.isnan(log_probs)),
                                "a score is NaN: no label can be predicted from it")
    return jnp.argmax(log_probs, axis=-1) + checked_zero


def posterior(log_probs: Float[Array, "*b k"]) -> Float[Array, "*b k"]:
    """p(y | x) under a uniform prior: the softmax over labels."""
    return jax.nn.softmax(log_probs, axis=-1)


def marginal_log_likelihood(log_probs: Float[Array, "*b k"]) -> Float[Array, "*b"]:
    """log p(x) = logsumexp_y log p(x | y) - log K (uniform prior)."""
    return jax.nn.logsumexp(log_probs, axis=-1) - math.log(log_probs.shape[-1])


def _checked_labels(log_probs: Float[Array, "n k"], labels: Int[Array, "n"]) -> Int[Array, "n"]:
    labels = jnp.asarray(labels)
    if log_probs.ndim != 2 or labels.shape != log_probs.shape[:1]:
        raise ValueError(
            f"expected log_probs of shape (n, K) and labels of shape (n,), "
            f"got {log_probs.shape} and {labels.shape}"
        )
    return checked_labels(labels, log_probs.shape[1])


def accuracy(log_probs: Float[Array, "n k"], labels: Int[Array, "n"]) -> Float[Array, ""]:
    """Fraction of images whose most likely label is the true one."""
    labels = _checked_labels(log_probs, labels)
    return jnp.mean(predict(log_probs) == labels)


def summarize(
    log_probs: Float[Array, "n k"], labels: Int[Array, "n"], num_dims: int, levels: int = 256
) -> dict[str, Float[Array, ""]]:
    """Accuracy and mean bits/dim, under the true label and marginal over labels."""
    labels = _checked_labels(log_probs, labels)
    true_label_log_probs = jnp.take_along_axis(log_probs, labels[:, None], axis=1)[:, 0]
    return {
        "accuracy": accuracy(log_probs, labels),
        "bits_per_dim": jnp.mean(bits_per_dim(true_label_log_probs, num_dims, levels)),
        "bits_per_dim_marginal": jnp.mean(
            bits_per_dim(marginal_log_likelihood(log_probs), num_dims, levels)
        ),
    }
