"""Projected gradient descent (Madry et al. 2018) on images with pixels in [0, 1].

PGD attacks a batch of images at once, each on its own: the attack ascends a
loss whose gradient `gradient_fn(images, keys)` supplies for the whole batch
(with each image's cost, e.g. function evaluations, which the attack sums), so
that one compiled gradient serves every image of the batch (and the batch can
be split over devices). The keys, one per image, change at every step, so the
same loop runs both modes of a randomised classifier: a gradient that ignores
them (fixed noise and probes, the paper's worst case for a deterministic
model) or one that averages fresh draws (expectation over transformation, EOT).
One image is a batch of one; an image's attack does not depend on its batch.
"""

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

# gradient_fn(images, keys) -> (gradients, costs), one key and one cost per image: the costs
# (e.g. function evaluations) are summed over the steps.
GradientFn = Callable[[Float[Array, "b *d"], PRNGKeyArray], tuple[Float[Array, "b *d"], Int[Array, " b"]]]


@dataclasses.dataclass(frozen=True)
class PGD:
    """An L-inf or L2 PGD attack: radius, step size, steps, random start."""

    norm: Literal["linf", "l2"]
    epsilon: float
    step_size: float
    steps: int
    random_start: bool = True

    def __post_init__(self):
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {self.norm!r}")
        if self.epsilon < 0 or self.step_size < 0 or self.steps < 0:
            raise ValueError(f"need epsilon, step_size and steps >= 0, got {self}")


def _l2_norm(x: Float[Array, "*d"]) -> Float[Array, ""]:
    return jnp.sqrt(jnp.sum(x**2))


def project(attack: PGD, image: Float[Array, "*d"], candidate: Float[Array, "*d"]) -> Float[Array, "*d"]:
    """The nearest point to `candidate` within the attack's ball around `image` and [0, 1]."""
    delta = candidate - image
    if attack.norm == "linf":
        delta = jnp.clip(delta, -attack.epsilon, attack.epsilon)
    else:
        delta = delta * jnp.minimum(1.0, attack.epsilon / jnp.maximum(_l2_norm(delta), 1e-12))
    return jnp.clip(image + delta, 0.0, 1.0)


def random_start(attack: PGD, image: Float[Array, "*d"], key: PRNGKeyArray) -> Float[Array, "*d"]:
    """A uniform point of the ball around `image` (clipped to [0, 1])."""
    if attack.norm == "linf":
        delta = jax.random.uniform(key, image.shape, minval=-attack.epsilon, maxval=attack.epsilon)
    else:
        direction_key, radius_key = jax.random.split(key)
        direction = jax.random.normal(direction_key, image.shape)
        radius = attack.epsilon * jax.random.uniform(radius_key) ** (1 / image.size)
        delta = radius * direction / _l2_norm(direction)
    return jnp.clip(image + delta, 0.0, 1.0)


def ascent_step(attack: PGD, gradient: Float[Array, "*d"]) -> Float[Array, "*d"]:
    """The steepest-ascent step of the attack's norm: a sign step, or a normalised one."""
    if attack.norm == "linf":
        return attack.step_size * jnp.sign(gradient)
    return attack.step_size * gradient / jnp.maximum(_l2_norm(gradient), 1e-12)


def pgd(
    gradient_fn: GradientFn, images: Float[Array, "b *d"], *, keys: PRNGKeyArray, attack: PGD
) -> tuple[Float[Array, "b *d"], Int[Array, " b"]]:
    """The adversarial images after `attack.steps` projected ascent steps from `images`
    (image i's random start and step keys from `keys[i]`), and each image's summed cost.

    The steps are a Python loop: each calls `gradient_fn`, which should be
    compiled on its own (as `attacks.attack_gradient_fn`'s is), so that
    attacks of every norm and step count share its executable. Compiling the
    loop as a whole would compile the ODE's derivative again for each attack.
    """
    if keys.shape != images.shape[:1]:
        raise ValueError(f"need one key per image, shape {images.shape[:1]}, got keys of shape {keys.shape}")
    start_keys, steps_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    x = jax.vmap(lambda i, k: random_start(attack, i, k))(images, start_keys) if attack.random_start else images
    step = jax.vmap(lambda i, x_, g: project(attack, i, x_ + ascent_step(attack, g)))
    cost = jnp.zeros(images.shape[:1], jnp.int32)
    for i in range(attack.steps):
        gradients, step_costs = gradient_fn(x, jax.vmap(lambda k: jax.random.fold_in(k, i))(steps_keys))
        x, cost = step(images, x, gradients), cost + step_costs
    return x, cost
