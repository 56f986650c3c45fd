"""Class-conditional Gaussian data, whose probability-flow map is known exactly.

If x_0 | y ~ N(mu_y, s^2 I), the SDE marginal is
x_t | y ~ N(alpha_t mu_y, v_t I) with v_t = alpha_t^2 s^2 + sigma_t^2, so the
true score is -(x - alpha_t mu_y) / v_t and the exact noise prediction is
eps_hat = -sigma_t * score = sigma_t (x - alpha_t mu_y) / v_t.

Probability-flow map. Along dx/dt = -beta x / 2 + g^2 (x - m_t) / (2 v_t)
with m_t = alpha_t mu, m_t' = -beta m_t / 2 and v_t' = -beta v_t + g^2
(the moment equations), z = (x - m_t) / sqrt(v_t) obeys
z' = [(-beta/2 + g^2/(2 v))(x - m) - (x - m) v'/(2 v)] / sqrt(v) = 0.
So x_1 = alpha_1 mu + sqrt(v_1 / v_t0) (x - alpha_t0 mu): affine in x.

Closed-form answer of the ODE. With the exact score the flow carries p_t0
onto p_1, so log p_t0(x) = log p_1(x_1) + integral of the divergence. The
likelihood ODE replaces p_1 by the prior N(0, I), hence returns
log p_t0(x) + [log N(x_1; 0, I) - log p_1(x_1)].
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from sde import AbstractSDE


def gaussian_log_density(z, mean, variance):
    return -0.5 * (jnp.sum((z - mean) ** 2) / variance + z.size * jnp.log(2 * jnp.pi * variance))


def marginal_variance(sde: AbstractSDE, t, scale):
    alpha, sigma = sde.marginal(t)
    return alpha**2 * scale**2 + sigma**2


class ExactNoise(eqx.Module):
    """noise_fn(x, t, y) for data N(means[y], scale^2 I). A module, so that models of other
    means and scales share one compiled program."""

    sde: AbstractSDE
    means: Float[Array, "k *d"]
    scale: Float[Array, ""]

    def __call__(self, x, t, y):
        alpha, sigma = self.sde.marginal(t)
        return sigma * (x - alpha * self.means[y]) / marginal_variance(self.sde, t, self.scale)

    def of_the_first_class(self, x, t):
        """noise_fn(x, t) of the first class's data alone: as a bound method, a pytree, so
        compiled solves of it are shared by every model of its shapes (unlike a lambda)."""
        return self(x, t, 0)


def exact_noise_fn(sde: AbstractSDE, means, scale) -> ExactNoise:
    return ExactNoise(sde, jnp.asarray(means), jnp.asarray(scale, jnp.float32))


def ode_log_likelihood(sde: AbstractSDE, x, mean, scale, t0):
    """What the probability-flow likelihood must return (module docstring)."""
    alpha_0, alpha_1 = sde.alpha(t0), sde.alpha(sde.T)
    v_0, v_1 = marginal_variance(sde, t0, scale), marginal_variance(sde, sde.T, scale)
    x_1 = alpha_1 * mean + jnp.sqrt(v_1 / v_0) * (x - alpha_0 * mean)
    return (
        gaussian_log_density(x, alpha_0 * mean, v_0)
        + gaussian_log_density(x_1, 0.0, 1.0)
        - gaussian_log_density(x_1, alpha_1 * mean, v_1)
    )
