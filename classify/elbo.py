"""The ELBO classifier: argmax_y of a Monte Carlo evidence lower bound (docs/method.md §4.11).

Diffusion Classifier's family (Li et al. 2023), on our networks: every label of
an image is scored by the continuous-time bound of `likelihood.elbo` with the
SAME (t, z) pairs, so the labels' errors are common random numbers; forward
passes only, all of them in one batched program. Rounds make it adaptive:
each round draws fresh pairs for the best labels so far.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Integer, PRNGKeyArray

from classify.classifiers import Kind, Scores, check_keys, check_pixels, pixel_shape
from classify.likelihoods import LabelNoiseFn, network_classes
from likelihood import (channels_first, dequantize, draw_pairs, elbo_offset, noised, pair_estimate,
                        to_model_space, typed_keys)
from sde import AbstractSDE, SubVPSDE

Rounds = tuple[tuple[int, int], ...]


class ELBOClassifier(eqx.Module):
    """argmax_y of the ELBO of log p(x | y), each label's the mean over its (t, z) pairs.

    `rounds`: ((pairs, labels), ...). Round r draws `pairs` new pairs per image,
    shared by its `labels` best labels by the mean so far (the first round's: all
    of them); the prediction is the best of the last round's labels, and a label
    dropped earlier keeps the mean of the pairs it got. `samples=N` is one round
    of N pairs on every label. `batch_size` bounds the network inputs per call
    (memory, not numbers; in one uncommitted timing on the digits network on 2 busy cores,
    100-200 ran fastest and 2,000 took 1.3x as long, so take it as a hint, not a measurement).
    """

    kind: ClassVar[Kind] = "elbo"
    deterministic: ClassVar[bool] = False

    network: LabelNoiseFn
    sde: AbstractSDE
    rounds: Rounds = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    stratified: bool = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)

    def __init__(
        self,
        network: LabelNoiseFn,
        *,
        samples: int | None = None,
        rounds: Rounds | None = None,
        sde: AbstractSDE = SubVPSDE(),
        t0: float = 1e-5,
        stratified: bool = True,
        levels: int = 256,
        num_classes: int | None = None,
        batch_size: int = 200,
    ):
        self.network, self.sde, self.t0, self.stratified, self.levels = network, sde, t0, stratified, levels
        self.num_classes = K = network_classes(network, num_classes)
        if samples is not None and rounds is not None:
            raise ValueError("give samples (one round on every label) or rounds, not both")
        rounds = tuple(rounds) if rounds is not None else ((100 if samples is None else samples, K),)
        if not rounds or rounds[0][1] != K:
            raise ValueError(f"the first round scores every label: its labels must be {K}, got {rounds}")
        for (pairs, labels), previous in zip(rounds, (K, *(labels for _, labels in rounds))):
            if pairs < 1 or not 1 <= labels <= previous:
                raise ValueError(f"each round needs pairs >= 1 and 1 <= labels <= the previous round's "
                                 f"labels, got {rounds}")
        if not 0 < t0 < sde.T:
            raise ValueError(f"t0 must lie in (0, {sde.T}), got {t0}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.rounds, self.batch_size = tuple((int(p), int(k)) for p, k in rounds), batch_size

    def _estimates(self, x: Float[Array, "n c h w"], keys: PRNGKeyArray) -> Scores:
        n, K = len(x), self.num_classes
        offsets = jax.vmap(lambda image: elbo_offset(self.sde, image, self.t0))(x)
        rows = jnp.arange(n)[:, None]
        sums, counts = jnp.zeros((n, K)), jnp.zeros((n, K), jnp.int32)
        labels = jnp.broadcast_to(jnp.arange(K), (n, K))
        for r, (pairs, keep) in enumerate(self.rounds):
            if r > 0:  # the best `keep` of the previous round's labels, by their means so far
                means = jnp.take_along_axis(sums / counts, labels, axis=1)
                labels = jnp.take_along_axis(labels, jax.lax.top_k(means, keep)[1], axis=1)
            round_keys = jax.vmap(lambda key: jax.random.fold_in(key, r))(keys)
            times, noises = jax.vmap(lambda key: draw_pairs(self.sde, key, pairs, x.shape[1:], self.t0,
                                                            self.stratified))(round_keys)
            # Images on the outside (vmapped), so that a batch of images split over the devices
            # stays split: each device scores its own images. Inside, lax.map bounds the inputs
            # per step to about `batch_size` over all images.
            per_image = max(1, min(self.batch_size // n, keep * pairs))

            def image_estimates(image, offset, image_times, image_noises, image_labels):
                def estimate(item):
                    label, p = item
                    eps_hat = self.network(noised(self.sde, image, image_times[p], image_noises[p]),
                                           image_times[p], label)
                    return pair_estimate(self.sde, offset, image_noises[p], eps_hat, self.t0)

                label_index, pair_index = (a.ravel() for a in jnp.meshgrid(jnp.arange(keep), jnp.arange(pairs),
                                                                              indexing="ij"))
                items = (image_labels[label_index], pair_index)
                return jax.lax.map(estimate, items, batch_size=per_image).reshape(keep, pairs)

            estimates = jax.vmap(image_estimates)(x, offsets, times, noises, labels)
            sums = sums.at[rows, labels].add(estimates.sum(-1))
            counts = counts.at[rows, labels].add(pairs)
        scores = sums / counts
        best = jnp.argmax(jnp.take_along_axis(scores, labels, axis=1), axis=1)
        prediction = labels[jnp.arange(n), best]
        passes = sum(pairs * keep for pairs, keep in self.rounds)
        return Scores(scores, prediction, jnp.zeros(n, jnp.int32), jnp.full(n, passes, jnp.int32))

    @eqx.filter_jit
    def scores(self, pixels: Integer[Array, "n h w c"], keys: PRNGKeyArray) -> Scores:
        """The bound of n images of integer pixels under every label, dequantised with noise
        from `keys` (one per image, split as the exact classifier splits it: the dequantisation
        noise, then the pairs)."""
        pixels = check_pixels(pixels, pixel_shape(self.network), "ELBOClassifier.scores")
        keys = check_keys(keys, len(pixels))
        noise_keys, pair_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
        x = jax.vmap(lambda key, image: dequantize(key, image, self.levels))(noise_keys, channels_first(pixels))
        return self._estimates(x, pair_keys)

    @eqx.filter_jit
    def model_scores(self, x: Float[Array, "n c h w"], keys: PRNGKeyArray) -> Scores:
        """The bound of n model-space inputs, used as given (the pairs come from `keys`)."""
        _, pair_keys = jax.vmap(jax.random.split, out_axes=1)(check_keys(keys, len(x)))
        return self._estimates(jnp.asarray(x), pair_keys)

    def image_scores(self, image: Float[Array, "c h w"], key: PRNGKeyArray, *,
                     adjoint=None) -> tuple[Float[Array, " k"], Int[Array, ""]]:
        """The bound for every label of ONE image of intensities in [0, 1], and 0 solver
        evaluations: differentiable in `image` for a given `key` (its dequantisation noise,
        then its pairs), with no ODE to go through (`adjoint` is accepted and unused)."""
        noise_key, pair_key = jax.random.split(typed_keys(key))
        x = to_model_space((self.levels - 1) * image, jax.random.uniform(noise_key, image.shape), self.levels)
        return self._estimates(x[None], pair_key[None]).scores[0], jnp.int32(0)
