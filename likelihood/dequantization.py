"""From pixels to model space, and from nats to bits/dim (docs/method.md §4.4).

The one pixel -> model-space map of the project. Pixel values k lie in
[0, levels - 1] (integers, or the reals between them for attacks and
interpolations); an offset u in [0, 1) places a value inside its bin:

    y = 2 (k + u) / levels - 1                         (`to_model_space`)

with u ~ U[0, 1) for the likelihood (`dequantize`) and for the WideResNet's
training, u = 1/2 (the bin's midpoint) for the WideResNet's evaluation. The
score network is trained on the pixel values spread over [-1, 1] without
noise, y = 2 k / (levels - 1) - 1 (`rescale`, ScoreFlow's choice, §3).
Data sets store images as `h w c`; the networks take `c h w` (`channels_first`).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Integer, PRNGKeyArray, Real

from likelihood.keys import typed_keys


def to_model_space(
    values: Real[ArrayLike, "*d"], offset: Float[ArrayLike, "*d"] | float, levels: int = 256
) -> Float[Array, "*d"]:
    """y = 2 (k + u) / levels - 1 for pixel values k and offsets u in their bins, in float32."""
    values = jnp.asarray(values)
    values = values.astype(jnp.int32) if jnp.issubdtype(values.dtype, jnp.integer) else values
    # Multiplying by 1 / levels (exact for a power of two) keeps the numbers of every caller.
    return 2 * ((values + offset) * jnp.float32(1 / levels)) - 1


def rescale(pixels: Real[ArrayLike, "*d"], levels: int = 256) -> Float[Array, "*d"]:
    """y = 2 k / (levels - 1) - 1: pixel values spread over [-1, 1], no noise (training data, §3)."""
    return jnp.asarray(pixels).astype(jnp.float32) * (2 / (levels - 1)) - 1


def channels_first(images: Real[ArrayLike, "*b h w c"]) -> Real[Array, "*b c h w"]:
    """`h w c` images (as data sets store them) in the networks' `c h w` layout."""
    return jnp.moveaxis(jnp.asarray(images), -1, -3)


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
    checked_zero = eqx.error_if(
        jnp.float32(0),
        jnp.any((pixels < 0) | (pixels >= levels)),
        f"pixels must lie in [0, {levels}) for levels={levels}",
    )
    return to_model_space(pixels, jax.random.uniform(typed_keys(key), pixels.shape) + checked_zero, levels)


def bits_per_dim(
    log_prob: Float[ArrayLike, "*b"], num_dims: int, levels: int = 256
) -> Float[Array, "*b"]:
    """Negative log-likelihood in bits per dimension of the discrete data (§4.5).

    bpd = -log p(y) / (D ln 2) + log2(levels) - 1, the "+ 7" of 256 levels. What
    the offset assumes: y was made by `dequantize` from `levels` equally spaced
    integer levels, so the density of u = (k + U) / levels in [0, 1) is
    p(y) * 2^D (the Jacobian of y = 2u - 1), and a bin of width 1 / levels holds
    probability about p_u / levels^D. The result is then (in expectation over U)
    an upper bound on the discrete data's bits/dim, by Jensen. For data with
    fewer real levels spread over 0..255 (e.g. 17-level digits rescaled), pass
    levels=256 and read the figure as bits per dim of the rescaled 8-bit data.
    """
    return -jnp.asarray(log_prob) / (num_dims * math.log(2)) + math.log2(levels) - 1
