"""Projected gradient descent (Madry et al. 2018) on images with pixels in [0, 1].

The attack ascends a loss whose gradient `gradient_fn(image, key)` supplies
(with its cost, e.g. function evaluations, which the attack sums);
`key` changes at every step, so the same loop runs both modes of a randomised
classifier: a gradient that ignores it (fixed noise and probes, the paper's
worst case for a deterministic model) or one that averages fresh draws
(expectation over transformation, EOT).
"""

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

# gradient_fn(image, key) -> (gradient, cost): the cost (e.g. function evaluations) is summed.
GradientFn = Callable[[Float[Array, "*d"], PRNGKeyArray], tuple[Float[Array, "*d"], Array]]


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
    gradient_fn: GradientFn, image: Float[Array, "*d"], *, key: PRNGKeyArray, attack: PGD
) -> tuple[Float[Array, "*d"], Array]:
    """The adversarial image after `attack.steps` projected ascent steps from `image`,
    and the summed cost that `gradient_fn` reported.

    The steps are a Python loop: each calls `gradient_fn`, which should be
    compiled on its own (as `attacks.attack_gradient_fn`'s is), so that
    attacks of every norm and step count share its executable. Compiling the
    loop as a whole would compile the ODE's derivative again for each attack.
    """
    start_key, steps_key = jax.random.split(key)
    x = random_start(attack, image, start_key) if attack.random_start else image
    cost = jnp.zeros((), jnp.int32)
    for i in range(attack.steps):
        gradient, step_cost = gradient_fn(x, jax.random.fold_in(steps_key, i))
        x, cost = project(attack, image, x + ascent_step(attack, gradient)), cost + step_cost
    return x, cost
