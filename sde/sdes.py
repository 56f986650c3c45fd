"""The subVP and VP SDEs with linear beta (docs/method.md §1).

Both share beta(t) = b0 + (b1 - b0) t, its integral B(t), the drift
f(x, t) = -beta(t) x / 2, the mean coefficient alpha(t) = exp(-B(t) / 2) and the
prior N(0, I). They differ in g(t)^2 and sigma(t). Every small-t quantity goes
through expm1 so that it holds in float32 down to t = 1e-5, where
sigma_subVP is about 1e-6.
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

Time = Float[ArrayLike, "*t"]


class AbstractSDE(eqx.Module):
    """A linear-drift SDE dx = -beta(t) x / 2 dt + g(t) dw on [0, T].

    Subclasses give `diffusion_squared` and `sigma`; everything else, the
    probability-flow drift included, is shared.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0

    def beta(self, t: Time) -> Float[Array, "*t"]:
        return self.beta_min + (self.beta_max - self.beta_min) * jnp.asarray(t)

    def integrated_beta(self, t: Time) -> Float[Array, "*t"]:
        """B(t) = integral_0^t beta(s) ds."""
        t = jnp.asarray(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    # `B` is the name docs/method.md §1 uses; keep both spellings pointing at one formula.
    B = integrated_beta

    def time_from_integrated_beta(self, b: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        """Inverse of B: the root of (b1 - b0) t^2 / 2 + b0 t - b = 0 in t >= 0.

        Written as 2 b / (b0 + sqrt(b0^2 + 2 (b1 - b0) b)) to avoid the
        cancellation of the textbook form at small b.
        """
        b = jnp.asarray(b)
        slope = self.beta_max - self.beta_min
        return 2 * b / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2 * slope * b))

    def log_snr(self, t: Time) -> Float[Array, "*t"]:
        """lambda(t) = log(alpha^2 / sigma^2), falling from about 27.6 at t = 1e-5 (subVP) to
        about -10 at T: the time variable of `likelihood.LogSNRTime` (docs/method.md §4.3)."""
        return -self.integrated_beta(t) - 2 * jnp.log(self.sigma(t))

    @abc.abstractmethod
    def time_from_log_snr(self, log_snr: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        """Inverse of `log_snr`, in closed form."""

    def drift(self, x: Float[Array, "*d"], t: Float[ArrayLike, ""]) -> Float[Array, "*d"]:
        return -0.5 * self.beta(t) * x

    @abc.abstractmethod
    def diffusion_squared(self, t: Time) -> Float[Array, "*t"]:
        """g(t)^2."""

    @abc.abstractmethod
    def sigma(self, t: Time) -> Float[Array, "*t"]:
        """Standard deviation of x_t | x_0."""

    @abc.abstractmethod
    def noise_coefficient(self, t: Time) -> Float[Array, "*t"]:
        """g(t)^2 / (2 sigma(t)): the factor of eps_hat in the probability-flow drift."""

    def alpha(self, t: Time) -> Float[Array, "*t"]:
        """Mean coefficient: x_t | x_0 has mean alpha(t) x_0."""
        return jnp.exp(-0.5 * self.integrated_beta(t))

    def marginal(self, t: Time) -> tuple[Float[Array, "*t"], Float[Array, "*t"]]:
        """(alpha(t), sigma(t)) of the perturbation kernel N(alpha x_0, sigma^2 I)."""
        return self.alpha(t), self.sigma(t)

    def prior_sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
        return jax.random.normal(key, shape)

    def prior_log_prob(self, z: Float[Array, "*d"]) -> Float[Array, ""]:
        """log N(z; 0, I), summed over every axis of one input."""
        return -0.5 * (z.size * math.log(2 * math.pi) + jnp.sum(z**2))

    def probability_flow_drift(
        self, x: Float[Array, "*d"], t: Float[ArrayLike, ""], eps_hat: Float[Array, "*d"]
    ) -> Float[Array, "*d"]:
        """f(x, t) - g^2 s / 2 with s = -eps_hat / sigma (docs/method.md §1)."""
        return self.drift(x, t) + self.noise_coefficient(t) * eps_hat

    def probability_flow_divergence(
        self, t: Float[ArrayLike, ""], num_dims: int, eps_divergence: Float[Array, "*c"]
    ) -> Float[Array, "*c"]:
        """div_x of the probability-flow drift, given div_x eps_hat.

        The drift's own part, -beta D / 2, is exact, so a trace estimator only
        has to estimate the network's part.
        """
        return -0.5 * self.beta(t) * num_dims + self.noise_coefficient(t) * eps_divergence

    @abc.abstractmethod
    def importance_cdf(self, t: Time, eps: float) -> Float[Array, "*t"]:
        """Unnormalised CDF of p(t) ∝ g^2 / sigma^2 on [eps, T] (docs/method.md §3)."""

    @abc.abstractmethod
    def importance_cdf_inverse(self, u: Time, eps: float) -> Float[Array, "*t"]:
        """Closed-form inverse of `importance_cdf`."""

    def importance_density(self, t: Time, eps: float) -> Float[Array, "*t"]:
        """Normalised density g(t)^2 / sigma(t)^2 / Z on [eps, T], zero outside."""
        t = jnp.asarray(t)
        weight = self.diffusion_squared(t) / self.sigma(t) ** 2
        inside = (t >= eps) & (t <= self.T)
        return jnp.where(inside, weight / self.importance_cdf(self.T, eps), 0.0)

    def sample_importance_time(
        self, key: PRNGKeyArray, shape: tuple[int, ...], eps: float
    ) -> Float[Array, "*shape"]:
        """Draw t ~ g^2 / sigma^2 on [eps, T] by the closed-form inverse CDF.

        For both SDEs e^B solves an equation that is at most quadratic
        (see `importance_cdf_inverse`), so no bisection is needed.
        """
        u = jax.random.uniform(key, shape) * self.importance_cdf(self.T, eps)
        return jnp.clip(self.importance_cdf_inverse(u, eps), eps, self.T)


def _log_expm1(b: Float[Array, "*t"]) -> Float[Array, "*t"]:
    """log(e^b - 1); expm1 keeps it exact for small b (so it needs no separate log b branch for b < 1e-3, docs/method.md §3.3)."""
    return jnp.log(jnp.expm1(b))


class SubVPSDE(AbstractSDE):
    """The sub-VP SDE of Song et al. (2021), the paper's choice (docs/method.md §1)."""

    def diffusion_squared(self, t: Time) -> Float[Array, "*t"]:
        return self.beta(t) * -jnp.expm1(-2 * self.integrated_beta(t))

    def sigma(self, t: Time) -> Float[Array, "*t"]:
        return -jnp.expm1(-self.integrated_beta(t))

    def noise_coefficient(self, t: Time) -> Float[Array, "*t"]:
        # g^2 / (2 sigma) = beta (1 - e^{-2B}) / (2 (1 - e^{-B})) = beta (1 + e^{-B}) / 2:
        # no division by sigma, so no blow-up as t -> 0.
        return 0.5 * self.beta(t) * (1 + jnp.exp(-self.integrated_beta(t)))

    def time_from_log_snr(self, log_snr: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        # e^lambda = (1 - sigma) / sigma^2 with sigma = 1 - e^{-B}, whose positive root is
        # sigma = 2 / (1 + r), r = sqrt(1 + 4 e^lambda), and 1 - sigma = 4 e^lambda / (1 + r)^2.
        # B = -log(1 - sigma) from sigma where it is small (lambda > 0, small t), from the
        # second form where sigma is near 1: each avoids the other's cancellation.
        log_snr = jnp.asarray(log_snr)
        r = jnp.sqrt(1 + 4 * jnp.exp(log_snr))
        b = jnp.where(log_snr > 0, -jnp.log1p(-2 / (1 + r)), 2 * jnp.log1p(r) - log_snr - math.log(4))
        return self.time_from_integrated_beta(b)

    def importance_cdf(self, t: Time, eps: float) -> Float[Array, "*t"]:
        # g^2 / sigma^2 dt = (e^B + 1) / (e^B - 1) dB, whose antiderivative is
        # G(B) = 2 log(e^B - 1) - B.
        def antiderivative(b):
            return 2 * _log_expm1(b) - b

        return antiderivative(self.integrated_beta(t)) - antiderivative(self.integrated_beta(eps))

    def importance_cdf_inverse(self, u: Time, eps: float) -> Float[Array, "*t"]:
        # G(B) = v  <=>  (z - 1)^2 = e^v z with z = e^B, whose root above 1 is
        # z - 1 = (e^v + sqrt(e^v (4 + e^v))) / 2 (no cancellation for small v).
        b_eps = self.integrated_beta(eps)
        ev = jnp.exp(jnp.asarray(u) + 2 * _log_expm1(b_eps) - b_eps)
        z_minus_1 = 0.5 * (ev + jnp.sqrt(ev * (4 + ev)))
        return self.time_from_integrated_beta(jnp.log1p(z_minus_1))


class VPSDE(AbstractSDE):
    """The variance-preserving SDE (DDPM's continuous limit), for reference."""

    def diffusion_squared(self, t: Time) -> Float[Array, "*t"]:
        return self.beta(t)

    def sigma(self, t: Time) -> Float[Array, "*t"]:
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))

    def noise_coefficient(self, t: Time) -> Float[Array, "*t"]:
        return 0.5 * self.beta(t) / self.sigma(t)

    def time_from_log_snr(self, log_snr: Float[ArrayLike, "*t"]) -> Float[Array, "*t"]:
        # e^lambda = e^{-B} / (1 - e^{-B}) = 1 / (e^B - 1), so B = log(1 + e^{-lambda}).
        return self.time_from_integrated_beta(jax.nn.softplus(-jnp.asarray(log_snr)))

    def importance_cdf(self, t: Time, eps: float) -> Float[Array, "*t"]:
        # g^2 / sigma^2 dt = e^B / (e^B - 1) dB, antiderivative log(e^B - 1).
        return _log_expm1(self.integrated_beta(t)) - _log_expm1(self.integrated_beta(eps))

    def importance_cdf_inverse(self, u: Time, eps: float) -> Float[Array, "*t"]:
        log_expm1_b = jnp.asarray(u) + _log_expm1(self.integrated_beta(eps))
        return self.time_from_integrated_beta(jnp.logaddexp(0.0, log_expm1_b))
