"""log p(x | y) for every label y, with common random numbers (docs/method.md §4.7).

Classification only needs the differences between labels, so by default
every label of one image sees the SAME dequantisation noise and the SAME
probe vectors: their errors are then strongly correlated and mostly cancel
in the argmax. `share_noise=False` draws them afresh per label, for
comparison.

The input space is named, never guessed from the dtype: `inputs="pixels"`
(the default) takes integer pixels in [0, levels), `c h w`, and dequantises
them; `inputs="model"` takes model-space floats, used as given. Every
function returns `(log p, stats)`.
"""

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Shaped

from likelihood import LikelihoodStats, batch_log_likelihood, dequantize, typed_keys
from sde import AbstractSDE

LabelNoiseFn = Callable[[Float[Array, "*d"], Float[Array, ""], Int[Array, ""]], Float[Array, "*d"]]
Inputs = Literal["pixels", "model"]


def network_classes(noise_fn: LabelNoiseFn, num_classes: int | None) -> int:
    """The number of labels: the network's own (`noise_fn.config.num_classes`, as a
    `score.ScoreNet` has), or `num_classes` for a function without one. Refuses a
    network without labels, and a count that is not the network's."""
    config = getattr(noise_fn, "config", None)
    own = getattr(config, "num_classes", None) if config is not None else None
    if config is not None and not own:
        raise ValueError("the network is unconditional (num_classes None or 0): every label would "
                         "get the same log p, so there is nothing to classify")
    if own and num_classes is not None and num_classes != own:
        raise ValueError(f"num_classes={num_classes}, but the network has {own} classes")
    chosen = own or num_classes
    if chosen is None:
        raise ValueError("num_classes is needed for a noise function without a `config`")
    if chosen < 1:
        raise ValueError(f"num_classes must be at least 1, got {chosen}")
    return int(chosen)


def checked_labels(labels: Int[Array, " m"], num_classes: int) -> Int[Array, " m"]:
    """The labels, with a run-time error if one lies outside [0, num_classes)."""
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    # The check rides on a scalar zero: on the labels themselves it would pin a sharded
    # batch to one device.
    checked_zero = eqx.error_if(jnp.zeros((), labels.dtype), jnp.any((labels < 0) | (labels >= num_classes)),
                                f"labels must lie in [0, {num_classes}) for {num_classes} classes")
    return labels + checked_zero


def _model_space(xs: Shaped[Array, "m *d"], keys: PRNGKeyArray, inputs: Inputs, levels: int) -> Array:
    if inputs == "pixels":
        if not jnp.issubdtype(xs.dtype, jnp.integer):
            raise TypeError(
                f"inputs='pixels' takes integer pixels in [0, {levels}), got dtype {xs.dtype}; "
                "pass inputs='model' for model-space data in [-1, 1] (likelihood.to_model_space "
                "maps continuous pixel values there)")
        return jax.vmap(lambda k, pixels: dequantize(k, pixels, levels))(keys, xs)
    if inputs == "model":
        if not jnp.issubdtype(xs.dtype, jnp.floating):
            raise TypeError(f"inputs='model' takes floating model-space data, got dtype {xs.dtype}; "
                            "integer pixels are inputs='pixels'")
        return xs
    raise ValueError(f"inputs must be 'pixels' or 'model', got {inputs!r}")


def _pair_log_likelihoods(noise_fn, sde, xs, labels, keys, inputs, levels, options):
    """`pair_log_likelihoods` for labels known to lie in range (made here, not given)."""
    dequantization_keys, probe_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    xs = _model_space(xs, dequantization_keys, inputs, levels)
    return batch_log_likelihood(noise_fn, sde, xs, labels, keys=probe_keys, **options)


@eqx.filter_jit  # eager calls with the same functions and shapes reuse one compilation
def pair_log_likelihoods(
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    xs: Shaped[Array, "m *d"],
    labels: Int[Array, " m"],
    *,
    keys: PRNGKeyArray,
    num_classes: int | None = None,
    inputs: Inputs = "pixels",
    levels: int = 256,
    **options,
) -> tuple[Float[Array, " m"], LikelihoodStats]:
    """log p(x_j | y_j) for m (image, label) pairs, and the solve statistics.

    Pair j's dequantisation noise and probes come from `keys[j]`: pairs that
    share a key share their noise. `xs` are in the space `inputs` names
    (module docstring), `c h w` per image. `noise_fn(x, t, y)` is the
    label-conditional noise prediction on one unbatched input; labels must lie
    in [0, K), K from the network or `num_classes` (unchecked for a bare function
    without either). `options` go to `likelihood.batch_log_likelihood`
    (batching, divergence, t0, rtol, atol, solver, max_steps, norm, adjoint,
    dt0); with the default `OneSolve` all m problems share one solve.
    """
    xs, keys = jnp.asarray(xs), typed_keys(keys)
    if keys.shape != xs.shape[:1] or jnp.shape(labels) != xs.shape[:1]:
        raise ValueError(
            f"expected one key and one label per image, shape ({xs.shape[0]},), "
            f"got {keys.shape} and {jnp.shape(labels)}"
        )
    if num_classes is not None or getattr(noise_fn, "config", None) is not None:
        labels = checked_labels(labels, network_classes(noise_fn, num_classes))
    return _pair_log_likelihoods(noise_fn, sde, xs, labels, keys, inputs, levels, options)


def label_keys(keys: PRNGKeyArray, num_classes: int, share_noise: bool) -> PRNGKeyArray:
    """The key of every (image, label) pair, [n, K]: the image's own key when shared."""
    if share_noise:
        return jnp.repeat(keys[:, None], num_classes, axis=1)
    return jax.vmap(lambda k: jax.random.split(k, num_classes))(keys)


@eqx.filter_jit  # eager calls with the same functions and shapes reuse one compilation
def batch_class_log_likelihoods(
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    xs: Shaped[Array, "n *d"],
    *,
    keys: PRNGKeyArray,
    num_classes: int | None = None,
    share_noise: bool = True,
    inputs: Inputs = "pixels",
    levels: int = 256,
    **options,
) -> tuple[Float[Array, "n k"], LikelihoodStats]:
    """log p(x_i | y) for n images and all K labels, and the solve statistics.

    `keys` holds one PRNG key per image: its dequantisation noise and probes
    come from it (the same for all its labels unless `share_noise=False`).
    K is the network's (`num_classes` for a function without a config).
    `xs`, `noise_fn`, `inputs` and `options` are as in `pair_log_likelihoods`.
    """
    xs, keys = jnp.asarray(xs), typed_keys(keys)
    num_classes = network_classes(noise_fn, num_classes)
    num_images = xs.shape[0]
    if keys.shape != (num_images,):
        raise ValueError(f"expected one key per image, shape ({num_images},), got {keys.shape}")
    log_probs, stats = _pair_log_likelihoods(
        noise_fn, sde, jnp.repeat(xs, num_classes, axis=0), jnp.tile(jnp.arange(num_classes), num_images),
        label_keys(keys, num_classes, share_noise).reshape(num_images * num_classes), inputs, levels, options,
    )
    unflatten = lambda leaf: leaf.reshape(num_images, num_classes, *leaf.shape[1:])
    return unflatten(log_probs), jax.tree.map(unflatten, stats)


def class_log_likelihoods(
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    x: Shaped[Array, "*d"],
    *,
    key: PRNGKeyArray,
    **options,
) -> tuple[Float[Array, " k"], LikelihoodStats]:
    """log p(x | y) in nats for every label y of ONE image, and the solve statistics.

    Integer pixels are dequantised once and shared by all labels, as are the
    divergence probes (unless `share_noise=False`). `options` are those of
    `batch_class_log_likelihoods` (num_classes, share_noise, inputs, levels,
    rtol, atol, divergence, ...).
    """
    log_probs, stats = batch_class_log_likelihoods(
        noise_fn, sde, jnp.asarray(x)[None], keys=typed_keys(key)[None], **options
    )
    return log_probs[0], jax.tree.map(lambda leaf: leaf[0], stats)
