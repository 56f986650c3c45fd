"""Probability-flow likelihood against closed forms (issue: tests 3, 5, 6)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from likelihood import (
    DiffusionTime,
    ExactTrace,
    Hutchinson,
    LogSNRTime,
    OneSolve,
    VmappedSolves,
    batch_log_likelihood,
    bits_per_dim,
    dequantize,
    log_likelihood,
    log_p_norm,
    part_max_norm,
)
from sde import SubVPSDE, VPSDE
from tests.gaussian_model import exact_noise_fn, ode_log_likelihood

T0 = 1e-5


def gaussian_problem(seed: int, num_dims: int, scale: float, num_classes: int = 1):
    key_means, key_x = jax.random.split(jax.random.key(seed))
    means = 0.5 * jax.random.normal(key_means, (num_classes, num_dims))
    x = means[0] + scale * jax.random.normal(key_x, (num_dims,))
    return means, x


@pytest.mark.parametrize("sde", [SubVPSDE(), VPSDE()], ids=type)
@given(
    seed=st.integers(0, 2**16),
    num_dims=st.sampled_from([2, 9, 64]),  # each size compiles anew; means and scales share them
    scale=st.floats(0.1, 1.0),
)
def test_exact_trace_likelihood_matches_closed_form(sde, seed, num_dims, scale):
    means, x = gaussian_problem(seed, num_dims, scale)
    noise_fn = exact_noise_fn(sde, means, scale)
    log_prob, stats = log_likelihood(
        noise_fn.of_the_first_class, sde, x, key=jax.random.key(0), divergence=ExactTrace()
    )
    expected = ode_log_likelihood(sde, x, means[0], scale, T0)
    assert abs(float(log_prob) - float(expected)) <= 1e-3 * num_dims
    assert int(stats.num_steps) > 0


@given(pixels=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20),
       log_p=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=3))
def test_error_norms_weigh_the_log_p_entries(pixels, log_p):
    """`log-p` sees the log p entries alone; `max` is at least the RMS over the whole state."""
    state = (jnp.asarray(pixels), jnp.asarray(log_p))
    other_pixels = (jnp.asarray(pixels) * 2 + 1, jnp.asarray(log_p))
    assert float(log_p_norm(state)) == float(log_p_norm(other_pixels)) == pytest.approx(
        float(jnp.sqrt(jnp.mean(jnp.asarray(log_p) ** 2))))
    whole = float(optx.rms_norm(state))
    assert float(part_max_norm(state)) >= max(whole, float(log_p_norm(state))) * (1 - 1e-6)


def test_every_error_norm_solves_to_the_closed_form_and_changes_the_steps():
    sde = SubVPSDE()
    means, x = gaussian_problem(3, 48, 0.3)
    noise_fn = exact_noise_fn(sde, means, 0.3)
    expected = float(ode_log_likelihood(sde, x, means[0], 0.3, T0))
    nfe = {}
    for norm in (optx.rms_norm, log_p_norm, part_max_norm):
        log_prob, stats = log_likelihood(noise_fn.of_the_first_class, sde, x, key=jax.random.key(0),
                                         divergence=ExactTrace(), rtol=1e-3, atol=1e-3, norm=norm)
        assert float(log_prob) == pytest.approx(expected, abs=0.01)
        nfe[norm.__name__] = int(stats.num_function_evaluations)
    # The max of the two parts is the strictest; the three controllers take different steps.
    assert nfe["part_max_norm"] >= nfe["rms_norm"] and len(set(nfe.values())) > 1, nfe


@pytest.mark.parametrize("sde", [SubVPSDE(), VPSDE()], ids=type)
def test_the_log_snr_time_variable_solves_to_the_closed_form_with_other_steps(sde):
    """The same ODE solved in s = -lambda(t): the closed-form log p, by other steps than in t."""
    means, x = gaussian_problem(5, 48, 0.3)
    noise_fn = exact_noise_fn(sde, means, 0.3)
    expected = float(ode_log_likelihood(sde, x, means[0], 0.3, T0))
    nfe = {}
    for variable in (DiffusionTime(), LogSNRTime()):
        log_prob, stats = log_likelihood(noise_fn.of_the_first_class, sde, x, key=jax.random.key(0),
                                         divergence=ExactTrace(), rtol=1e-5, atol=1e-5, time_variable=variable)
        assert float(log_prob) == pytest.approx(expected, abs=0.01)
        nfe[type(variable).__name__] = int(stats.num_function_evaluations)
    assert nfe["DiffusionTime"] != nfe["LogSNRTime"], nfe


def test_a_fixed_grid_costs_its_steps_and_converges_to_the_closed_form():
    """`steps=N`: N Heun steps, 2N evaluations, whatever the tolerance; the error shrinks with N
    (second order: a few hundred steps reach 0.1 nats on the stiff subVP start)."""
    sde = SubVPSDE()
    means, x = gaussian_problem(2, 16, 0.3)
    noise_fn = exact_noise_fn(sde, means, 0.3)
    expected = float(ode_log_likelihood(sde, x, means[0], 0.3, T0))
    errors = []
    for steps in (4, 32, 256):
        log_prob, stats = log_likelihood(noise_fn.of_the_first_class, sde, x, key=jax.random.key(0),
                                         divergence=ExactTrace(), solver=diffrax.Heun(), steps=steps, rtol=1e-9)
        assert int(stats.num_steps) == steps and int(stats.num_function_evaluations) == 2 * steps
        errors.append(abs(float(log_prob) - expected))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.1, errors


def test_probes_of_a_linear_isotropic_field_are_exact():
    """eps_hat linear in x with Jacobian c I: every Rademacher probe gives the trace."""
    sde = SubVPSDE()
    means, x = gaussian_problem(0, 12, 0.4)
    noise_fn = exact_noise_fn(sde, means, 0.4)
    log_prob, stats = log_likelihood(
        noise_fn.of_the_first_class, sde, x, key=jax.random.key(1), divergence=Hutchinson(5)
    )
    assert stats.channel_log_probs.shape == (5,)
    np.testing.assert_allclose(stats.channel_log_probs, log_prob, rtol=1e-6)
    assert float(log_prob) == pytest.approx(float(ode_log_likelihood(sde, x, means[0], 0.4, T0)), abs=1e-2)


def nonlinear_noise_fn(x, t, c):
    return jnp.tanh(x * (1 + c)) * (1 - t) + 0.1 * jnp.sin(3 * x)


def test_batching_strategies_agree_and_vmap_of_log_likelihood_is_vmapped_solves():
    sde = SubVPSDE()
    xs = jax.random.uniform(jax.random.key(0), (3, 2, 4), minval=-1, maxval=1)
    conditions = jnp.arange(3.0)
    keys = jax.random.split(jax.random.key(1), 3)
    options = dict(divergence=Hutchinson(2), rtol=1e-6, atol=1e-6)
    joint, joint_stats = batch_log_likelihood(
        nonlinear_noise_fn, sde, xs, conditions, keys=keys, batching=OneSolve(), **options
    )
    separate, separate_stats = batch_log_likelihood(
        nonlinear_noise_fn, sde, xs, conditions, keys=keys, batching=VmappedSolves(), **options
    )
    np.testing.assert_allclose(joint, separate, atol=1e-3)
    # One solve shares its step count; vmapped solves each keep their own.
    assert len(set(np.asarray(joint_stats.num_steps).tolist())) == 1
    vmapped = jax.vmap(
        lambda x, c, k: log_likelihood(lambda x_, t: nonlinear_noise_fn(x_, t, c), sde, x, key=k, **options)
    )(xs, conditions, keys)
    np.testing.assert_allclose(vmapped[0], separate, rtol=1e-6)
    np.testing.assert_array_equal(vmapped[1].num_steps, separate_stats.num_steps)


@pytest.mark.parametrize("dt0", [None, 0.05], ids=["automatic-first-step", "given-first-step"])
@pytest.mark.parametrize("solver", [diffrax.Dopri5(), diffrax.Tsit5(), diffrax.Heun()], ids=type)
def test_function_evaluation_count_is_exact(solver, dt0):
    calls = []

    def counting_noise_fn(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return nonlinear_noise_fn(x, t, 0.0)

    x = jnp.linspace(-0.9, 0.9, 6)
    _, stats = log_likelihood(counting_noise_fn, SubVPSDE(), x, key=jax.random.key(0), solver=solver, dt0=dt0)
    assert int(stats.num_function_evaluations) == len(calls)


def test_dequantize_lands_in_the_pixel_bin():
    pixels = jnp.arange(256, dtype=jnp.uint8).reshape(16, 16)
    y = dequantize(jax.random.key(0), pixels)
    assert y.dtype == jnp.float32 and float(y.min()) >= -1 and float(y.max()) < 1
    np.testing.assert_array_equal(jnp.floor((y + 1) / 2 * 256), pixels)


def test_uniform_data_under_a_uniform_model_is_eight_bits_per_dim():
    """The uniform density on [-1, 1]^D is 2^-D, which must read as 8 bits/dim."""
    num_dims = 3 * 32 * 32
    pixels = jax.random.randint(jax.random.key(0), (num_dims,), 0, 256)
    y = dequantize(jax.random.key(1), pixels)
    assert bool(jnp.all(jnp.abs(y) <= 1))
    log_prob = -num_dims * jnp.log(2.0)
    assert float(bits_per_dim(log_prob, num_dims)) == pytest.approx(8.0, abs=1e-5)
    assert float(bits_per_dim(-4 * jnp.log(2.0), 4, levels=16)) == pytest.approx(4.0, abs=1e-6)


class TestBadInput:
    sde = SubVPSDE()
    key = jax.random.key(0)

    @staticmethod
    def conv_noise_fn(x, t):
        kernel = jnp.ones((1, 1, 3, 3)) * t
        return jax.lax.conv(x[None], kernel, (1, 1), "SAME")[0]

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match=r"one input of shape \(2, 1, 8, 8\).*unbatched c h w inputs"):
            log_likelihood(self.conv_noise_fn, self.sde, jnp.zeros((2, 1, 8, 8)), key=self.key)

    def test_noise_prediction_of_the_wrong_shape(self):
        with pytest.raises(ValueError, match=r"to shape \(3,\)"):
            log_likelihood(lambda x, t: x[:3], self.sde, jnp.zeros(5), key=self.key)

    def test_integer_pixels(self):
        with pytest.raises(TypeError, match="dequantize"):
            log_likelihood(lambda x, t: x, self.sde, jnp.zeros(5, jnp.uint8), key=self.key)

    @pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
    def test_non_finite_input(self, bad):
        x = jnp.zeros(5).at[2].set(bad)
        with pytest.raises(Exception, match="non-finite"):
            log_likelihood(lambda x, t: x, self.sde, x, key=self.key)

    def test_pixels_out_of_range(self):
        with pytest.raises(Exception, match=r"pixels must lie in \[0, 256\)"):
            dequantize(self.key, jnp.array([0, 256, 3]))
        with pytest.raises(TypeError, match="integer"):
            dequantize(self.key, jnp.array([0.5]))

    @pytest.mark.parametrize("t0", [0.0, -1e-3, 1.0, 1.5])
    def test_t0_outside_the_unit_interval(self, t0):
        with pytest.raises(ValueError, match=r"t0 must lie in \(0, T=1.0\)"):
            log_likelihood(lambda x, t: x, self.sde, jnp.zeros(4), key=self.key, t0=t0)

    def test_step_limit_raises_instead_of_returning_nan(self):
        with pytest.raises(Exception, match="max_steps=3"):
            log_likelihood(nonlinear_noise_fn_unlabelled, self.sde, jnp.ones(4), key=self.key, max_steps=3)

    def test_non_finite_network_raises(self):
        with pytest.raises(Exception, match="solve failed|non-finite"):
            log_likelihood(lambda x, t: x / (t - 0.5), self.sde, jnp.ones(4), key=self.key)


def nonlinear_noise_fn_unlabelled(x, t):
    return nonlinear_noise_fn(x, t, 0.0)
