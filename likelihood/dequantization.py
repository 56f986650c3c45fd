"""From integer pixels to model space and from nats to bits/dim (SPEC.md §4)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Integer, PRNGKeyArray

from likelihood.keys import typed_keys


def dequantize(
    key: PRNGKeyArray, pixels: Integer[Array, "*d"], levels: int = 256
) -> Float[Array, "*d"]:
    """Uniform dequantisation into [-1, 1]: y = 2 (k + u) / levels - 1, u ~ U[0, 1).

    Raises if `pixels` is not an integer array or holds a value outside
    [0, levels).
    """
    pixels = jnp.asarray(pixels)
    if not jnp.issubdtype(pixels.dtype, jnp.integer):
        raise TypeError(f"dequantize takes integer pixels, got dtype {pixels.dtype}")
    # Widen first: with uint8, `levels` = 256 would wrap around to 0 in the check,
    # which rides on a scalar so that a sharded batch is not pinned to one device.
    pixels = pixels.astype(jnp.int32)
    bin_width = eqx.error_if(
        jnp.float32(1 / levels),
        jnp.any((pixels < 0) | (pixels >= levels)),
        f"pixels must lie in [0, {levels}) for levels={levels}",
    )
    u = (pixels + jax.random.uniform(typed_keys(key), pixels.shape)) * bin_width
    return 2 * u - 1


def bits_per_dim(
    log_prob: Float[ArrayLike, "*b"], num_dims: int, levels: int = 256
) -> Float[Array, "*b"]:
    """Negative log-likelihood in bits per dimension of the discrete data.

    bpd = -log p(y) / (D ln 2) + log2(levels) - 1, which is SPEC.md §4's
    "+ 7" for 256 levels. What the offset assumes: y was made by `dequantize`
    from `levels` equally spaced integer levels, so the density of
    u = (k + U) / levels in [0, 1) is p(y) * 2^D (the Jacobian of y = 2u - 1),
    and a bin of width 1 / levels holds probability about p_u / levels^D. The
    result is then (in expectation over U) an upper bound on the discrete
    data's bits/dim, by Jensen. For data with fewer real levels spread over
    0..255 (e.g. 17-level digits rescaled), pass levels=256 and read the
    figure as bits per dim of the rescaled 8-bit data.
    """
    return -jnp.asarray(log_prob) / (num_dims * math.log(2)) + math.log2(levels) - 1
