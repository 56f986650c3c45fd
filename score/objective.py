"""The denoising score-matching objective with likelihood weighting (docs/method.md §3).

With the noise parameterisation s = -eps_hat / sigma, the per-time error is

    l(t) = mean_d (z - eps_hat(alpha(t) x0 + sigma(t) z, t, y))^2,   z ~ N(0, I),

and the likelihood weighting is w(t) = g(t)^2 / sigma(t)^2. Three ways to draw t:

- "likelihood_is": t ~ p(t) = w(t) / Z on [eps, T], loss = l(t)   (the default),
- "likelihood":    t ~ U[eps, T],                   loss = w(t) l(t),
- "none":          t ~ U[eps, T],                   loss = l(t)   (plain DDPM-style),
- "mixture":       t ~ (p(t) + U[eps, T]) / 2,      loss = l(t)   (half of each, per example).

The importance-sampled loss is left unnormalised, as in ScoreFlow's training
loss and docs/method.md §3: it stays O(1), so gradient clipping at 1.0 and the learning
rate mean the same as for the plain loss. Its expectation relates to the
explicitly weighted one by

    E_uniform[w(t) l(t)] = (1 / (T - eps)) integral_eps^T w(t) l(t) dt
                         = Z / (T - eps) * E_IS[l(t)],   Z = sde.importance_cdf(T, eps).
"""

from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from score.network import ScoreNet
from sde import AbstractSDE

Weighting = Literal["likelihood_is", "likelihood", "none", "mixture"]


def _sample_time(
    sde: AbstractSDE, key: PRNGKeyArray, batch: int, weighting: Weighting, eps: float
) -> tuple[Float[Array, " batch"], Float[Array, " batch"]]:
    """Times t and the weights that multiply l(t) under `weighting`."""
    if weighting == "likelihood_is":
        return sde.sample_importance_time(key, (batch,), eps), jnp.ones(batch)
    if weighting == "mixture":
        importance_key, uniform_key, choice_key = jax.random.split(key, 3)
        t = jnp.where(jax.random.bernoulli(choice_key, 0.5, (batch,)),
                      sde.sample_importance_time(importance_key, (batch,), eps),
                      jax.random.uniform(uniform_key, (batch,), minval=eps, maxval=sde.T))
        return t, jnp.ones(batch)
    t = jax.random.uniform(key, (batch,), minval=eps, maxval=sde.T)
    if weighting == "likelihood":
        return t, sde.diffusion_squared(t) / sde.sigma(t) ** 2
    if weighting == "none":
        return t, jnp.ones(batch)
    raise ValueError(f"weighting must be 'likelihood_is', 'likelihood', 'none' or 'mixture', got {weighting!r}")


def loss(
    net: ScoreNet,
    sde: AbstractSDE,
    x0: Float[Array, "batch c h w"],
    y: Int[Array, " batch"],
    *,
    key: PRNGKeyArray,
    weighting: Weighting = "likelihood_is",
    eps: float = 1e-5,
) -> Float[Array, ""]:
    """Batch mean of the (weighted) noise-prediction error (docs/method.md §3).

    `x0` is data in [-1, 1]. `eps` is the smallest time: score_sde uses 1e-5,
    ScoreFlow 1e-2 for subVP; pass the config's value. The network gets its
    own dropout key per example.
    """
    batch = x0.shape[0]
    time_key, noise_key, dropout_key = jax.random.split(key, 3)
    t, weight = _sample_time(sde, time_key, batch, weighting, eps)
    z = jax.random.normal(noise_key, x0.shape)
    alpha, sigma = sde.marginal(t)
    x_t = alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * z
    eps_hat = jax.vmap(lambda x, t, y, k: net(x, t, y, key=k))(x_t, t, y, jax.random.split(dropout_key, batch))
    per_example = jnp.mean(jnp.square(z - eps_hat), axis=(1, 2, 3))
    return jnp.mean(weight * per_example)
