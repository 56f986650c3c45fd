"""Early elimination: a cheap pass shortlists labels, the exact pass runs on them.

Classification only needs the best label. A first pass with loose settings
(one probe, a loose tolerance), or another estimator's scores (`solve_shortlist`),
ranks all K labels of an image; the exact pass then solves only its `keep`
best. The shortlist has a fixed size, so both passes are ordinary fixed-shape
solves (one compiled program, shardable along the images), unlike a threshold
in nats, whose survivors vary per image.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Shaped

from classify.likelihoods import (
    Inputs,
    LabelNoiseFn,
    _pair_log_likelihoods,
    batch_class_log_likelihoods,
    label_keys,
    network_classes,
)
from likelihood import LikelihoodStats, typed_keys
from sde import AbstractSDE


class Shortlisted(eqx.Module):
    """The outcome of a shortlisted classification.

    `log_probs` holds the exact pass's log p(x | y) on the shortlist and, elsewhere,
    the first pass's estimate moved onto the exact pass's scale: by the image's
    mean exact-minus-first gap over its shortlist (docs/method.md §4.8). No such
    estimate exceeds the best shortlisted log p, so `prediction`, the best label
    of the shortlist, is also the argmax of `log_probs`.
    `first_stats` are the first pass's solve statistics (None for a first pass
    without a solve, such as an ELBO).
    """

    log_probs: Float[Array, "n k"]
    shortlisted: Bool[Array, "n k"]
    prediction: Int[Array, "n"]
    first_stats: LikelihoodStats | None
    exact_stats: LikelihoodStats


def solve_shortlist(
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    xs: Shaped[Array, "n *d"],
    first: Float[Array, "n k"],
    *,
    keys: PRNGKeyArray,
    keep: int,
    share_noise: bool = True,
    inputs: Inputs = "pixels",
    levels: int = 256,
    first_stats: LikelihoodStats | None = None,
    **options,
) -> Shortlisted:
    """Solve with `options` the `keep` best labels of each image by the first pass's scores
    `first` (from any estimator), with the keys `batch_class_log_likelihoods` gives each
    (image, label) pair, so the shortlisted log p equal those of the full computation."""
    num_images, num_classes = first.shape
    if not 1 <= keep <= num_classes:
        raise ValueError(f"keep must lie in [1, {num_classes}], got {keep}")
    xs, keys = jnp.asarray(xs), typed_keys(keys)
    _, shortlist = jax.lax.top_k(first, keep)  # [n, keep], best first
    pair_keys = jax.vmap(lambda k, labels: k[labels])(
        label_keys(keys, num_classes, share_noise), shortlist
    )
    exact, exact_stats = _pair_log_likelihoods(
        noise_fn, sde, jnp.repeat(xs, keep, axis=0), shortlist.reshape(-1), pair_keys.reshape(-1),
        inputs, levels, options,
    )
    exact = exact.reshape(num_images, keep)
    rows = jnp.arange(num_images)[:, None]
    # A cheap pass errs by about the same amount on every label of an image (that is why it
    # ranks them): the labels it left out get its scores plus the image's mean gap on the
    # shortlist. A left-out first score lies below every shortlisted one, so its moved score
    # lies below the shortlist's mean exact log p, and so below its best.
    gap = jnp.mean(exact - jnp.take_along_axis(first, shortlist, axis=1), axis=1, keepdims=True)
    return Shortlisted(
        log_probs=(first + gap).at[rows, shortlist].set(exact),
        shortlisted=jnp.zeros(first.shape, bool).at[rows, shortlist].set(True),
        prediction=jnp.take_along_axis(shortlist, jnp.argmax(exact, axis=1)[:, None], axis=1)[:, 0],
        first_stats=first_stats,
        exact_stats=jax.tree.map(lambda leaf: leaf.reshape(num_images, keep, *leaf.shape[1:]),
                                 exact_stats),
    )


def shortlist_class_log_likelihoods(
    noise_fn: LabelNoiseFn,
    sde: AbstractSDE,
    xs: Shaped[Array, "n *d"],
    *,
    keys: PRNGKeyArray,
    keep: int,
    num_classes: int | None = None,
    first_pass: dict,
    share_noise: bool = True,
    inputs: Inputs = "pixels",
    levels: int = 256,
    **options,
) -> Shortlisted:
    """Rank all labels with `options | first_pass`, then solve the `keep` best with `options`.

    Each (image, label) pair sees the same dequantisation noise and probe keys
    in both passes as in `batch_class_log_likelihoods` with the same keys, so
    the shortlisted labels' log p equal those of the full computation.
    `inputs` and `options` are those of `batch_class_log_likelihoods`.
    """
    num_classes = network_classes(noise_fn, num_classes)
    if not 1 <= keep <= num_classes:
        raise ValueError(f"keep must lie in [1, {num_classes}], got {keep}")
    first, first_stats = batch_class_log_likelihoods(
        noise_fn, sde, xs, keys=keys, num_classes=num_classes, share_noise=share_noise,
        inputs=inputs, levels=levels, **(options | first_pass),
    )
    return solve_shortlist(noise_fn, sde, xs, first, keys=keys, keep=keep, share_noise=share_noise,
                           inputs=inputs, levels=levels, first_stats=first_stats, **options)
