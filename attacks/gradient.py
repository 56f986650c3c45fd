"""Input gradients of class log-likelihoods through the probability-flow ODE.

log p(x | y) comes out of an ODE whose vector field holds a divergence, itself
a derivative of the network (SPEC.md §4), so its gradient with respect to the
input needs second-order terms: one Hessian-vector product of the network per
probe and step. Two routes, chosen by name:

- "solver" (the default): reverse mode through the solver's own steps
  (discretise-then-optimise, `diffrax.RecursiveCheckpointAdjoint`). It is the
  exact gradient of the number the forward solve returned, and its memory is
  bounded by the checkpoints (the solver state at some steps, never the
  network's activations).
- "adjoint": the continuous adjoint ODE solved backwards in time
  (`diffrax.BacksolveAdjoint`), whose vector field is the VJP of the forward
  one. Little memory, but its answer is a second numerical solve's, not the
  gradient of the forward number.

Either route's cost is mostly the VJP of the vector field at each step, the
Hessian-vector product of the divergence included. With `jax.jvp` probes
that is reverse over forward, and JAX's transposed convolutions fall off
XLA's fast CPU path inside the solver loop. For a `score.ScoreNet` pass
`score.for_reverse_mode(model)` with `Hutchinson(n, mode="reverse")`: the
same numbers, reverse over reverse on fast convolutions
(`benchmarks/gradient.py` measures both; `experiments.table3` does this).
That works with the "solver" route only: diffrax's `BacksolveAdjoint` takes
a JVP through the custom VJP, which JAX refuses.

Images are continuous pixels in [0, 1] (pixel / 255); the dequantisation
noise u in [0, 1) and the probes come from `key`, and the model sees
x = 2 (255 image + u) / 256 - 1 (SPEC.md §4 for integer pixels).
"""

from collections.abc import Callable
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from attacks.pgd import GradientFn
from classify import batch_class_log_likelihoods
from classify.likelihoods import LabelNoiseFn
from likelihood import LikelihoodStats
from sde import AbstractSDE

Route = Literal["solver", "adjoint"]


def adjoint_of(route: Route) -> diffrax.AbstractAdjoint:
    if route == "solver":
        return diffrax.RecursiveCheckpointAdjoint()
    if route == "adjoint":
        return diffrax.BacksolveAdjoint()
    raise ValueError(f"route must be 'solver' or 'adjoint', got {route!r}")


def image_log_likelihoods(
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    image: Float[Array, "*d"],
    *,
    key: PRNGKeyArray,
    num_classes: int,
    levels: int = 256,
    **options,
) -> tuple[Float[Array, "k"], LikelihoodStats]:
    """log p(x | y) for all labels of one image with continuous pixels in [0, 1].

    The same `key` gives the same dequantisation noise and probes, so the
    result is a deterministic, differentiable function of `image`.
    `options` are those of `classify.batch_class_log_likelihoods`.
    """
    noise_key, probe_key = jax.random.split(key)
    noise = jax.random.uniform(noise_key, image.shape)
    x = 2 * ((levels - 1) * image + noise) / levels - 1
    log_probs, stats = batch_class_log_likelihoods(
        noise_fn, sde, x[None], keys=probe_key[None], num_classes=num_classes, **options
    )
    return log_probs[0], jax.tree.map(lambda leaf: leaf[0], stats)


def cross_entropy(label: int | Array) -> Callable[[Float[Array, "k"]], Float[Array, ""]]:
    """-log softmax(log p(x | .))[label]: the untargeted attack's loss (uniform prior).

    Written as log(1 + sum over k != label of exp(log p_k - log p_label)) for its
    gradient. Through `jax.nn.log_softmax` the label's coefficient is
    softmax_label - 1, and softmax_label rounds to 1 in float32 once the
    margin passes about 16 nats (to a few multiples of 6e-8 below that): the
    gradient then loses its push against the true class, and a rounding
    difference in log p flips it. Here that coefficient is minus the sum of
    the other labels' coefficients, each accurate however small.
    """
    def loss(log_probs: Float[Array, "k"]) -> Float[Array, ""]:
        others = jnp.arange(log_probs.shape[-1]) != label
        gaps = jnp.where(others, log_probs - log_probs[label], -jnp.inf)
        return jnp.logaddexp(0.0, jax.nn.logsumexp(gaps))

    return loss


def input_gradient(
    objective: Callable[[Float[Array, "k"]], Float[Array, ""]],
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    image: Float[Array, "*d"],
    *,
    key: PRNGKeyArray,
    num_classes: int,
    route: Route = "solver",
    **options,
) -> tuple[Float[Array, ""], Float[Array, "*d"], Float[Array, "k"], LikelihoodStats]:
    """objective(log p(image | .)), its gradient with respect to `image`, the log p and
    the forward solve's statistics.

    `route` picks how the derivative goes through the ODE (module docstring);
    `options` are those of `image_log_likelihoods`.
    """
    adjoint = adjoint_of(route)

    def value(image_):
        log_probs, stats = image_log_likelihoods(
            noise_fn, sde, image_, key=key, num_classes=num_classes, adjoint=adjoint, **options
        )
        return objective(log_probs), (log_probs, stats)

    (loss, (log_probs, stats)), gradient = jax.value_and_grad(value, has_aux=True)(
        jnp.asarray(image)
    )
    return loss, gradient, log_probs, stats


@eqx.filter_jit
def _gradients_and_costs(noise_fn, sde, images, labels, keys, num_classes, route, options):
    """One draw's gradient of the untargeted cross-entropy and its forward evaluations, for
    each image of a batch (with its label and key).

    Compiled on its own, so that every attack on batches of one shape (either
    norm, either mode) reuses one executable instead of compiling a PGD loop
    around its own copy of the solve and its derivative. The images' solves are
    vmapped: each keeps its own steps, so its gradient does not depend on its batch.
    """
    def one(image, label, key):
        _, grad, _, stats = input_gradient(
            cross_entropy(label), noise_fn, sde, image, key=key, num_classes=num_classes,
            route=route, **options,
        )
        return grad, jnp.max(stats.num_function_evaluations)

    return jax.vmap(one)(images, labels, keys)


def attack_gradient_fn(
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    labels: Int[Array, " b"],
    *,
    keys: PRNGKeyArray,
    num_classes: int,
    mode: Literal["fixed", "eot"] = "fixed",
    eot_draws: int = 4,
    route: Route = "solver",
    **options,
) -> GradientFn:
    """The gradient of the untargeted cross-entropy and the forward function evaluations,
    for a batch of images with these labels, as `attacks.pgd` wants them.

    "fixed": image i's noise and probes come from `keys[i]` at every step (and at
    evaluation); "eot": the mean gradient over `eot_draws` fresh draws from each
    step's key, one compiled solve of the batch after another.
    """
    labels = jnp.asarray(labels)  # traced, so that every label shares one compiled gradient
    if labels.ndim != 1 or keys.shape != labels.shape:
        raise ValueError(f"need a batch of labels and one key per label, got shapes {labels.shape} "
                         f"and {keys.shape}")

    def gradients(images, draw_keys):
        return _gradients_and_costs(noise_fn, sde, images, labels, draw_keys, num_classes, route, options)

    if mode == "fixed":
        return lambda images, step_keys: gradients(images, keys)
    if mode == "eot":
        def averaged(images, step_keys):
            draws = jax.vmap(lambda k: jax.random.split(k, eot_draws))(step_keys)  # image x draw
            grads, costs = zip(*(gradients(images, draws[:, d]) for d in range(eot_draws)))
            return jnp.mean(jnp.stack(grads), axis=0), sum(costs)

        return averaged
    raise ValueError(f"mode must be 'fixed' or 'eot', got {mode!r}")
