"""Input gradients of a classifier's scores, through the likelihood ODE where it has one.

log p(x | y) comes out of an ODE whose vector field holds a divergence, itself
a derivative of the network (docs/method.md §4), so its gradient with respect
to the input needs second-order terms: one Hessian-vector product of the
network per probe and step. Two routes, chosen by name:

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
XLA's fast CPU path inside the solver loop (docs/cpu.md trap 1). So on the
solver route `for_input_gradients` swaps in `score.for_reverse_mode(network)`
with `Hutchinson(n, mode="reverse")`: the same numbers, reverse over reverse
on fast convolutions (`benchmarks/gradient.py` measures both). The continuous
adjoint cannot: diffrax's `BacksolveAdjoint` takes a JVP through the custom
VJP, which JAX refuses.

Images are one `c h w` array of intensities in [0, 1] (pixel / 255), the
space of `classifier.image_scores`; a discriminative classifier's gradient
is its network's, with no route.
"""

import dataclasses
from collections.abc import Callable
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

import score
from attacks.pgd import GradientFn
from classify import Classifier, LikelihoodClassifier
from likelihood import Hutchinson

Route = Literal["solver", "adjoint"]


def adjoint_of(route: Route) -> diffrax.AbstractAdjoint:
    if route == "solver":
        return diffrax.RecursiveCheckpointAdjoint()
    if route == "adjoint":
        return diffrax.BacksolveAdjoint()
    raise ValueError(f"route must be 'solver' or 'adjoint', got {route!r}")


def for_input_gradients(classifier: Classifier, route: Route) -> Classifier:
    """The same classifier (same numbers) built for fast input gradients on `route`: a
    score network's convolutions for reverse mode (module docstring). In the likelihood
    classifier only on the solver route, with its probes as VJPs; in the ELBO always (no
    solver, but its `lax.map` over batches is a loop too: 3.3x faster in one uncommitted
    timing of a digits ELBO-20 gradient)."""
    adjoint_of(route)  # checks the name
    if not isinstance(getattr(classifier, "network", None), score.ScoreNet):
        return classifier
    if isinstance(classifier, LikelihoodClassifier):
        if route != "solver" or not isinstance(classifier.divergence, Hutchinson):
            return classifier
        classifier = dataclasses.replace(classifier, divergence=dataclasses.replace(classifier.divergence,
                                                                                    mode="reverse"))
    return dataclasses.replace(classifier, network=score.for_reverse_mode(classifier.network))


def cross_entropy(label: int | Array) -> Callable[[Float[Array, " k"]], Float[Array, ""]]:
    """-log softmax(scores)[label]: the untargeted attack's loss (uniform prior).

    Written as log(1 + sum over k != label of exp(s_k - s_label)) for its
    gradient. Through `jax.nn.log_softmax` the label's coefficient is
    softmax_label - 1, and softmax_label rounds to 1 in float32 once the
    margin passes about 16 nats (to a few multiples of 6e-8 below that): the
    gradient then loses its push against the true class, and a rounding
    difference in log p flips it. Here that coefficient is minus the sum of
    the other labels' coefficients, each accurate however small.
    """
    def loss(scores: Float[Array, " k"]) -> Float[Array, ""]:
        others = jnp.arange(scores.shape[-1]) != label
        gaps = jnp.where(others, scores - scores[label], -jnp.inf)
        return jnp.logaddexp(0.0, jax.nn.logsumexp(gaps))

    return loss


def input_gradient(
    objective: Callable[[Float[Array, " k"]], Float[Array, ""]],
    classifier: Classifier,
    image: Float[Array, "c h w"],
    *,
    key: PRNGKeyArray,
    route: Route = "solver",
) -> tuple[Float[Array, ""], Float[Array, "c h w"], Float[Array, " k"], Int[Array, ""]]:
    """objective(scores of `image`), its gradient with respect to `image`, the scores and
    the forward solve's function evaluations (`classifier.image_scores` with `key`).

    `route` picks how the derivative goes through the ODE (module docstring).
    """
    adjoint = adjoint_of(route)

    def value(image_):
        scores, nfe = classifier.image_scores(image_, key, adjoint=adjoint)
        return objective(scores), (scores, nfe)

    (loss, (scores, nfe)), gradient = jax.value_and_grad(value, has_aux=True)(jnp.asarray(image))
    return loss, gradient, scores, nfe


@eqx.filter_jit
def _gradients_and_costs(classifier, images, labels, keys, route):
    """One draw's gradient of the untargeted cross-entropy and its forward evaluations, for
    each image of a batch (with its label and key).

    Compiled on its own, so that every attack on batches of one shape (either
    norm, either mode) reuses one executable instead of compiling a PGD loop
    around its own copy of the solve and its derivative. The images' solves are
    vmapped: each keeps its own steps, so its gradient does not depend on its batch.
    """
    def one(image, label, key):
        _, grad, _, nfe = input_gradient(cross_entropy(label), classifier, image, key=key, route=route)
        return grad, nfe

    return jax.vmap(one)(images, labels, keys)


def attack_gradient_fn(
    classifier: Classifier,
    labels: Int[Array, " b"],
    *,
    keys: PRNGKeyArray,
    mode: Literal["fixed", "eot"] = "fixed",
    eot_draws: int = 4,
    route: Route = "solver",
) -> GradientFn:
    """The gradient of the untargeted cross-entropy and the forward function evaluations,
    for a batch of images with these labels, as `attacks.pgd` wants them.

    "fixed": image i's noise and probes come from `keys[i]` at every step (and at
    evaluation); "eot": the mean gradient over `eot_draws` fresh draws from each
    step's key, one compiled solve of the batch after another. Pass the classifier
    through `for_input_gradients` first for the fast route.
    """
    labels = jnp.asarray(labels)  # traced, so that every label shares one compiled gradient
    if labels.ndim != 1 or keys.shape != labels.shape:
        raise ValueError(f"need a batch of labels and one key per label, got shapes {labels.shape} "
                         f"and {keys.shape}")

    def gradients(images, draw_keys):
        return _gradients_and_costs(classifier, images, labels, draw_keys, route)

    if mode == "fixed":
        return lambda images, step_keys: gradients(images, keys)
    if mode == "eot":
        def averaged(images, step_keys):
            draws = jax.vmap(lambda k: jax.random.split(k, eot_draws))(step_keys)  # image x draw
            grads, costs = zip(*(gradients(images, draws[:, d]) for d in range(eot_draws)))
            return jnp.mean(jnp.stack(grads), axis=0), sum(costs)

        return averaged
    raise ValueError(f"mode must be 'fixed' or 'eot', got {mode!r}")
