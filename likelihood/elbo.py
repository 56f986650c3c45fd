"""The continuous-time evidence lower bound of a noise-prediction network (docs/method.md §4.11).

For an input x (model space, `c h w`, D numbers) and a label y, with t drawn
from the likelihood weighting's proposal p(t) = w(t) / Z on [t0, T]
(w = g^2 / sigma^2, the training objective's, §3.3) and z ~ N(0, I):

    ELBO(x, y) = E log N(x_T; 0, I) + D log(sigma(T) / sigma(t0))
                 - (Z / 2) E_{t ~ p, z} ||z - eps_hat(alpha(t) x + sigma(t) z, t, y)||^2,

where x_T ~ N(alpha(T) x, sigma(T)^2 I) makes the first term closed-form.
It bounds E log p^SDE_t0(x') for x' ~ N(alpha(t0) x, sigma(t0)^2 I): the
log-density, at the likelihood ODE's start time, of the model's reverse SDE
(not of its probability-flow ODE; the two agree when the score is exact).

Each (t, z) pair gives one unbiased estimate. Stratified times (one per
stratum of p's CDF) cut the variance 11x on the digits model, and the control
variate ||z||^2 - D (mean exactly 0) a further 1.2x (benchmarks/elbo_variance.py,
results/digits/estimators/variance/).
"""

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from likelihood.keys import typed_keys
from sde import AbstractSDE


def draw_times(sde: AbstractSDE, key: PRNGKeyArray, num: int, t0: float,
               stratified: bool = True) -> Float[Array, " num"]:
    """`num` times from p(t) = w(t) / Z on [t0, T] by its inverse CDF; `stratified`: one
    uniform per stratum [i, i + 1) / num of the CDF, so that the times cover p evenly."""
    u = jax.random.uniform(typed_keys(key), (num,))
    if stratified:
        u = (jnp.arange(num) + u) / num
    return jnp.clip(sde.importance_cdf_inverse(u * sde.importance_cdf(sde.T, t0), t0), t0, sde.T)


def draw_pairs(sde: AbstractSDE, key: PRNGKeyArray, num: int, shape: tuple[int, ...], t0: float,
               stratified: bool = True) -> tuple[Float[Array, " num"], Float[Array, "num *shape"]]:
    """`num` (t, z) pairs for inputs of `shape`: t from `draw_times`, z ~ N(0, I)."""
    time_key, noise_key = jax.random.split(typed_keys(key))
    return draw_times(sde, time_key, num, t0, stratified), jax.random.normal(noise_key, (num, *shape))


def elbo_offset(sde: AbstractSDE, x: Float[Array, "*d"], t0: float) -> Float[Array, ""]:
    """The terms of the bound that need no network: the prior's expected log-density, the
    entropy gain D log(sigma(T) / sigma(t0)), and -Z D / 2, the control variate's mean."""
    D = x.size
    alpha_T, sigma_T = sde.marginal(sde.T)
    prior = -0.5 * (D * math.log(2 * math.pi) + alpha_T**2 * jnp.sum(x**2) + D * sigma_T**2)
    entropy = D * (jnp.log(sigma_T) - jnp.log(sde.sigma(t0)))
    return prior + entropy - 0.5 * sde.importance_cdf(sde.T, t0) * D


def pair_estimate(
    sde: AbstractSDE, offset: Float[Array, ""], z: Float[Array, "*d"], eps_hat: Float[Array, "*d"], t0: float
) -> Float[Array, ""]:
    """One pair's unbiased estimate of the bound, given `elbo_offset(sde, x, t0)` and the
    network's eps_hat at x_t = alpha(t) x + sigma(t) z (`noised`)."""
    excess = jnp.sum(jnp.square(z - eps_hat)) - jnp.sum(jnp.square(z))
    return offset - 0.5 * sde.importance_cdf(sde.T, t0) * excess


def noised(sde: AbstractSDE, x: Float[Array, "*d"], t: Float[Array, ""], z: Float[Array, "*d"]) -> Float[Array, "*d"]:
    """x_t = alpha(t) x + sigma(t) z, the network's input for the pair (t, z)."""
    alpha, sigma = sde.marginal(t)
    return alpha * x + sigma * z


def elbo(
    noise_fn,
    sde: AbstractSDE,
    x: Float[Array, "*d"],
    y: Int[Array, ""],
    *,
    key: PRNGKeyArray,
    num_samples: int,
    t0: float = 1e-5,
    stratified: bool = True,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The bound on one input and label from `num_samples` pairs drawn with `key`: the mean
    of the pairs' estimates, and its standard error (their standard deviation / sqrt(n),
    which assumes independent pairs and so overstates the error of stratified ones)."""
    if not 0 < t0 < sde.T:
        raise ValueError(f"t0 must lie in (0, {sde.T}), got {t0}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    times, noises = draw_pairs(sde, key, num_samples, x.shape, t0, stratified)
    offset = elbo_offset(sde, x, t0)

    def estimate(t, z):
        return pair_estimate(sde, offset, z, noise_fn(noised(sde, x, t, z), t, y), t0)

    estimates = jax.vmap(estimate)(times, noises)
    spread = jnp.std(estimates, ddof=1) if num_samples > 1 else jnp.float32(jnp.inf)
    return jnp.mean(estimates), spread / math.sqrt(num_samples)
