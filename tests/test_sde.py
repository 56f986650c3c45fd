"""SDE consistency (issue: tests 4): moments, small-t numerics, importance sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sde import SubVPSDE, VPSDE

SDES = [SubVPSDE(), VPSDE()]
times = st.floats(min_value=1e-5, max_value=1.0)


@pytest.mark.parametrize("sde", SDES, ids=type)
@given(t=times)
def test_moment_equations(sde, t):
    """d(var)/dt = -beta var + g^2 and d(alpha)/dt = -beta alpha / 2, by autodiff."""
    variance = lambda s: sde.sigma(s) ** 2
    t = jnp.float32(t)
    dvar = jax.grad(variance)(t)
    dalpha = jax.grad(sde.alpha)(t)
    decay, diffusion = sde.beta(t) * variance(t), sde.diffusion_squared(t)
    # Near T the two terms cancel: allow float32 rounding of the terms themselves.
    tolerance = 2e-4 * abs(diffusion - decay) + 1e-6 * (decay + diffusion)
    assert abs(dvar - (diffusion - decay)) <= tolerance
    np.testing.assert_allclose(dalpha, -0.5 * sde.beta(t) * sde.alpha(t), rtol=1e-5)


@pytest.mark.parametrize("sde", SDES, ids=type)
@given(t=times)
def test_float32_matches_float64_reference(sde, t):
    """sigma, g^2 and the probability-flow coefficient hold in float32 down to t = 1e-5."""
    b0, b1 = sde.beta_min, sde.beta_max
    big_b = b0 * t + 0.5 * (b1 - b0) * t**2
    beta = b0 + (b1 - b0) * t
    if isinstance(sde, SubVPSDE):
        sigma, g2 = -np.expm1(-big_b), beta * -np.expm1(-2 * big_b)
    else:
        sigma, g2 = np.sqrt(-np.expm1(-big_b)), beta
    t32 = jnp.float32(t)
    np.testing.assert_allclose(sde.sigma(t32), sigma, rtol=1e-5)
    np.testing.assert_allclose(sde.diffusion_squared(t32), g2, rtol=1e-5)
    np.testing.assert_allclose(sde.noise_coefficient(t32), g2 / (2 * sigma), rtol=1e-5)


def test_subvp_sigma_at_smallest_time():
    assert SubVPSDE().sigma(jnp.float32(1e-5)) == pytest.approx(1.0e-6, rel=1e-3)


@pytest.mark.parametrize("sde", SDES, ids=type)
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_importance_density_integrates_to_one_and_is_the_cdf_slope(sde, eps):
    # The density is ~1/t near eps: integrate on a log grid, t dt/t.
    t = jnp.geomspace(eps, 1.0, 200_001)
    density = sde.importance_density(t, eps)
    total = np.trapezoid(np.asarray(density * t, np.float64), np.log(np.asarray(t, np.float64)))
    assert total == pytest.approx(1.0, abs=1e-3)
    normaliser = sde.importance_cdf(sde.T, eps)
    slope = jax.vmap(jax.grad(lambda s: sde.importance_cdf(s, eps)))(t[::5000])
    np.testing.assert_allclose(slope / normaliser, density[::5000], rtol=1e-3)


@pytest.mark.parametrize("sde", SDES, ids=type)
@given(t=st.floats(min_value=1e-5, max_value=1.0), eps=st.sampled_from([1e-5, 1e-3, 1e-2]))
def test_importance_cdf_inverse_round_trip(sde, t, eps):
    t = max(t, eps)
    u = sde.importance_cdf(jnp.float32(t), eps)
    assert sde.importance_cdf_inverse(u, eps) == pytest.approx(t, rel=1e-3, abs=1e-7)


@pytest.mark.parametrize("sde", SDES, ids=type)
@given(t=times)
def test_log_snr_falls_and_its_inverse_round_trips_in_float32(sde, t):
    """lambda = log(alpha^2 / sigma^2) against float64, decreasing, and t(lambda(t)) = t."""
    big_b = sde.beta_min * t + 0.5 * (sde.beta_max - sde.beta_min) * t**2
    sigma = -np.expm1(-big_b) if isinstance(sde, SubVPSDE) else np.sqrt(-np.expm1(-big_b))
    t32 = jnp.float32(t)
    log_snr = sde.log_snr(t32)
    assert float(log_snr) == pytest.approx(-big_b - 2 * np.log(sigma), rel=1e-5, abs=1e-5)
    assert float(jax.grad(sde.log_snr)(t32)) < 0
    assert float(sde.time_from_log_snr(log_snr)) == pytest.approx(t, rel=1e-5)


@pytest.mark.parametrize("sde", SDES, ids=type)
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_importance_sampler_matches_its_cdf(sde, eps):
    """Kolmogorov-Smirnov: sup |F_n - F| below the 1 % critical value 1.63 / sqrt(n)."""
    n = 20_000
    samples = np.sort(np.asarray(sde.sample_importance_time(jax.random.key(3), (n,), eps)))
    assert samples.min() >= eps and samples.max() <= sde.T
    cdf = np.asarray(sde.importance_cdf(samples, eps) / sde.importance_cdf(sde.T, eps))
    upper = np.arange(1, n + 1) / n
    ks = max(np.max(upper - cdf), np.max(cdf - (upper - 1 / n)))
    assert ks < 1.63 / np.sqrt(n)


@pytest.mark.parametrize("sde", SDES, ids=type)
def test_prior(sde):
    z = sde.prior_sample(jax.random.key(0), (3, 4))
    assert z.shape == (3, 4)
    expected = -0.5 * (12 * np.log(2 * np.pi) + np.sum(np.asarray(z) ** 2))
    assert sde.prior_log_prob(z) == pytest.approx(expected, rel=1e-6)


def test_subvp_flow_drift_is_stable_as_t_goes_to_zero():
    sde = SubVPSDE()
    x = jnp.ones(4)
    drift = sde.probability_flow_drift(x, jnp.float32(1e-5), x)
    # -beta x / 2 + beta (1 + e^{-B}) eps / 2 -> beta/2 at eps = x = 1.
    np.testing.assert_allclose(drift, 0.5 * sde.beta(1e-5), rtol=1e-5)
