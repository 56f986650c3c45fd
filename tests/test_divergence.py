"""Divergence estimators (issue: tests 1 and 2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from likelihood import ExactTrace, Hutchinson, divergence
from likelihood.divergence import UNROLLED_PROBES, layout_of

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).filter(lambda s: np.prod(s) <= 32)


def random_field(seed: int, shape: tuple[int, ...], nonlinear: bool):
    """x -> A x (+ tanh) on inputs of `shape`, with random A."""
    num_dims = int(np.prod(shape))
    key_a, key_b, key_x = jax.random.split(jax.random.key(seed), 3)
    a = jax.random.normal(key_a, (num_dims, num_dims)) / np.sqrt(num_dims)
    b = jax.random.normal(key_b, (num_dims,))

    def field(x):
        h = a @ x.reshape(-1)
        return (jnp.tanh(h + b) * h if nonlinear else h).reshape(shape)

    return field, jax.random.normal(key_x, shape)


@given(seed=st.integers(0, 2**16), shape=shapes, nonlinear=st.booleans())
def test_exact_trace_is_the_jacobian_trace(seed, shape, nonlinear):
    field, x = random_field(seed, tuple(shape), nonlinear)
    num_dims = x.size
    jacobian = jax.jacfwd(field)(x).reshape(num_dims, num_dims)
    (trace,) = divergence(field, x, key=jax.random.key(0), estimator=ExactTrace())
    assert trace == pytest.approx(float(jnp.trace(jacobian)), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
@given(seed=st.integers(0, 2**16), shape=shapes, nonlinear=st.booleans())
def test_hutchinson_is_unbiased(kind, seed, shape, nonlinear):
    """The probe mean matches the exact trace within 5 standard errors."""
    field, x = random_field(seed, tuple(shape), nonlinear)
    n = 4000
    estimates = divergence(field, x, key=jax.random.key(seed), estimator=Hutchinson(n, kind))
    assert estimates.shape == (n,)
    (trace,) = divergence(field, x, key=jax.random.key(0), estimator=ExactTrace())
    standard_error = float(jnp.std(estimates)) / np.sqrt(n)
    assert abs(float(jnp.mean(estimates)) - float(trace)) <= 5 * standard_error + 1e-4 * (
        1 + abs(float(trace))
    )


def test_rademacher_probes_have_lower_variance_than_gaussian_ones():
    """For a diagonal-dominant Jacobian Rademacher probes are almost exact."""
    field, x = random_field(7, (16,), nonlinear=False)
    spread = {
        kind: float(jnp.std(divergence(field, x, key=jax.random.key(1), estimator=Hutchinson(2000, kind))))
        for kind in ("rademacher", "gaussian")
    }
    assert spread["rademacher"] < spread["gaussian"]


@settings(max_examples=4)  # four layouts compile per example
@given(seed=st.integers(0, 2**16), shape=shapes, nonlinear=st.booleans())
def test_every_probe_layout_gives_the_same_numbers(seed, shape, nonlinear):
    """v . (J^T v) by VJPs, and v . (J v) by unrolled, vmapped or scanned JVPs, probe by probe."""
    field, x = random_field(seed, tuple(shape), nonlinear)
    key = jax.random.key(seed)
    unrolled = divergence(field, x, key=key, estimator=Hutchinson(3, probe_loop="unrolled"))
    for other in (Hutchinson(3, mode="reverse"), Hutchinson(3, probe_loop="vmapped"),
                  Hutchinson(3, probe_loop="scanned")):
        np.testing.assert_allclose(divergence(field, x, key=key, estimator=other), unrolled, rtol=1e-5, atol=1e-5)


def test_auto_layout_unrolls_few_probes_on_cpu_only():
    assert jax.default_backend() == "cpu"
    limit = UNROLLED_PROBES["cpu"]
    assert layout_of(Hutchinson(limit), limit) == "unrolled"
    assert layout_of(Hutchinson(limit + 1), limit + 1) == "vmapped"
    assert layout_of(Hutchinson(2, probe_loop="scanned"), 2) == "scanned"
    assert layout_of(ExactTrace(), 64) == "vmapped"


def test_hutchinson_rejects_bad_settings():
    with pytest.raises(ValueError, match="n_probes"):
        Hutchinson(0)
    with pytest.raises(ValueError, match="kind"):
        Hutchinson(1, "uniform")
    with pytest.raises(ValueError, match="mode"):
        Hutchinson(1, mode="sideways")
    with pytest.raises(ValueError, match="probe_loop"):
        Hutchinson(1, probe_loop="sideways")
