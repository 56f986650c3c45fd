"""Augmentation and the cross-entropy objective of the WideResNet baseline (docs/method.md §8).

Its inputs come from the one pixel -> model-space map, `likelihood.to_model_space`.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from baseline.network import WideResNet


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
