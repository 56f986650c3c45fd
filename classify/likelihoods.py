"""log p(x | y) for every label y, with common random numbers (SPEC.md §4).

Classification only needs the differences between labels, so by default
every label of one image sees the SAME dequantisation noise and the SAME
probe vectors: their errors are then strongly correlated and mostly cancel
in the argmax. `share_noise=False` draws them afresh per label, for
comparison.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, Shaped

from likelihood import LikelihoodStats, batch_log_likelihood, dequantize, typed_keys
from sde import AbstractSDE

LabelNoiseFn = Callable[[Float[Array, "*d"], Float[Array, ""], Int[Array, ""]], Float[Array, "*d"]]


@eqx.filter_jit  # eager calls with the same functions and shapes reuse one compilation
def pair_log_likelihoods(
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    xs: Shaped[Array, "m *d"],
    labels: Int[Array, "m"],
    *,
    keys: PRNGKeyArray,
    levels: int = 256,
    **options,
) -> tuple[Float[Array, "m"], LikelihoodStats]:
    """log p(x_j | y_j) for m (image, label) pairs, and the solve statistics.

    Pair j's dequantisation noise and probes come from `keys[j]`: pairs that
    share a key share their noise. `xs` holds integer pixels in [0, levels),
    dequantised here (SPEC.md §4), or floating model-space data, used as given.
    `noise_fn(x, t, y)` is the label-conditional noise prediction on one
    unbatched input. `options` go to `likelihood.batch_log_likelihood`
    (batching, divergence, t0, rtol, atol, solver, max_steps, norm); with the
    default `OneSolve` all m problems share one solve.
    """
    xs, keys = jnp.asarray(xs), typed_keys(keys)
    if keys.shape != xs.shape[:1] or jnp.shape(labels) != xs.shape[:1]:
        raise ValueError(
            f"expected one key and one label per image, shape ({xs.shape[0]},), "
            f"got {keys.shape} and {jnp.shape(labels)}"
        )
    dequantization_keys, probe_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    if jnp.issubdtype(xs.dtype, jnp.integer):
        xs = jax.vmap(lambda k, pixels: dequantize(k, pixels, levels))(dequantization_keys, xs)
    return batch_log_likelihood(noise_fn, sde, xs, labels, keys=probe_keys, **options)


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
    num_classes: int,
    share_noise: bool = True,
    levels: int = 256,
    **options,
) -> tuple[Float[Array, "n k"], LikelihoodStats]:
    """log p(x_i | y) for n images and all K labels, and the solve statistics.

    `keys` holds one PRNG key per image: its dequantisation noise and probes
    come from it (the same for all its labels unless `share_noise=False`).
    `xs`, `noise_fn` and `options` are as in `pair_log_likelihoods`.
    """
    xs, keys = jnp.asarray(xs), typed_keys(keys)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    num_images = xs.shape[0]
    if keys.shape != (num_images,):
        raise ValueError(f"expected one key per image, shape ({num_images},), got {keys.shape}")
    log_probs, stats = pair_log_likelihoods(
        noise_fn, sde, jnp.repeat(xs, num_classes, axis=0),
        jnp.tile(jnp.arange(num_classes), num_images),
        keys=label_keys(keys, num_classes, share_noise).reshape(num_images * num_classes),
        levels=levels, **options,
    )
    unflatten = lambda leaf: leaf.reshape(num_images, num_classes, *leaf.shape[1:])
    return unflatten(log_probs), jax.tree.map(unflatten, stats)


@eqx.filter_jit  # eager calls with the same functions and shapes reuse one compilation
def class_log_likelihoods(
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    x: Shaped[Array, "*d"],
    *,
    key: PRNGKeyArray,
    num_classes: int,
    **options,
) -> Float[Array, "k"]:
    """log p(x | y) in nats for every label y of ONE image.

    Integer pixels are dequantised once and shared by all labels, as are the
    divergence probes (unless `share_noise=False`). `options` are those of
    `batch_class_log_likelihoods`.
    """
    log_probs, _ = batch_class_log_likelihoods(
        noise_fn, sde, jnp.asarray(x)[None], keys=typed_keys(key)[None], num_classes=num_classes,
        **options
    )
    return log_probs[0]
