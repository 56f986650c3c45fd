"""Inputs, augmentation and the cross-entropy objective of the WideResNet baseline (SPEC.md §8)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Integer, PRNGKeyArray

from baseline.network import WideResNet


def model_inputs(
    pixels: Integer[Array, "n h w c"], *, key: PRNGKeyArray | None = None
) -> Float[Array, "n c h w"]:
    """uint8 images in the model's space [-1, 1], channel-first per image.

    With a `key` (training): uniform dequantisation, y = 2 (k + u) / 256 - 1 with
    u ~ U[0, 1), the same numbers as `likelihood.dequantize(key, pixels)`, so
    the WRN is trained on the inputs the score classifier sees (SPEC.md §3:
    the paper's WRN baseline was trained with dequantisation noise). Without
    (evaluation): the bins' midpoints u = 1/2, the mean of those inputs.
    """
    pixels = jnp.asarray(pixels).astype(jnp.int32)
    u = 0.5 if key is None else jax.random.uniform(key, pixels.shape)
    return jnp.moveaxis(2 * ((pixels + u) * jnp.float32(1 / 256)) - 1, -1, 1)


def random_crop(x: Float[Array, "n c h w"], padding: int, *, key: PRNGKeyArray) -> Float[Array, "n c h w"]:
    """Each image shifted by up to `padding` pixels: a random h x w crop of the image
    padded with its reflection (the WRN paper's "random crops from the image padded
    by 4 pixels on each side, filling missing pixels with reflections")."""
    if padding == 0:
        return x
    n, c, h, w = x.shape
    padded = jnp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode="reflect")
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)
    crop = lambda image, offset: jax.lax.dynamic_slice(image, (0, offset[0], offset[1]), (c, h, w))
    return jax.vmap(crop)(padded, offsets)


def loss(
    model: WideResNet,
    x: Float[Array, "batch c h w"],
    labels: Int[Array, " batch"],
    *,
    key: PRNGKeyArray | None = None,
) -> Float[Array, ""]:
    """Batch mean of the cross-entropy -log softmax(model(x))[label].

    With a `key`, every example gets its own dropout key (training); without,
    no dropout (evaluation).
    """
    if key is None:
        logits = jax.vmap(model)(x)
    else:
        logits = jax.vmap(lambda image, k: model(image, key=k))(x, jax.random.split(key, x.shape[0]))
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))
