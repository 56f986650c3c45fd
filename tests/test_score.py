"""The score network (docs/method.md §2) and its training objective (docs/method.md §3)."""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import score
from score.layers import GroupNorm, Layout
from sde import SubVPSDE

CPU_PRESETS = ["digits", "mnist", "fashion-mnist"]
# Small enough to evaluate on tens of thousands of inputs in a second.
TINY = score.NetConfig(
    image_size=4, channels=1, num_classes=3, nf=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), dropout=0.0
)


def parameter_count(config: score.NetConfig) -> int:
    """Counted from shapes alone: no 67 M-parameter allocation."""
    net = eqx.filter_eval_shape(score.ScoreNet, config, key=jax.random.key(0))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(net))


def perturbed(net: score.ScoreNet, key) -> score.ScoreNet:
    """Noise on every parameter, so the zero-initialised layers pass a signal."""
    leaves, treedef = jax.tree.flatten(net)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@eqx.filter_jit
def apply(net: score.ScoreNet, x, t, y, key=None):
    """One compiled call instead of hundreds of eagerly dispatched operations."""
    return net(x, t, y, key=key)


def example(config: score.NetConfig, seed: int = 0):
    key = jax.random.key(seed)
    x = jax.random.normal(key, (config.channels, config.image_size, config.image_size))
    return x, jnp.float32(0.3), jnp.int32(2)


@pytest.mark.parametrize(
    "config, expected",
    [
        (score.PRESETS["cifar10"], 67_194_499),
        (dataclasses.replace(score.PRESETS["cifar10"], num_classes=None), 61_804_419),
        (dataclasses.replace(score.PRESETS["cifar10-deep"], num_classes=None), 106_632_579),
    ],
    ids=["cifar10", "cifar10-unconditional", "cifar10-deep-unconditional"],
)
def test_parameter_count_matches_the_paper(config, expected):
    assert parameter_count(config) == expected


@pytest.mark.parametrize("name", CPU_PRESETS)
def test_cpu_preset_output_has_input_shape_and_starts_at_zero(name):
    """The zero-initialised head makes the untrained network predict exactly zero noise."""
    config = score.PRESETS[name]
    net = score.ScoreNet(config, key=jax.random.key(0))
    x, t, y = example(config)
    eps_hat = apply(net, x, t, y)
    assert eps_hat.shape == x.shape
    assert jnp.all(eps_hat == 0)


@pytest.fixture(scope="module")
def digits_net():
    return perturbed(score.ScoreNet(score.PRESETS["digits"], key=jax.random.key(0)), jax.random.key(1))


def test_dropout_only_with_a_key(digits_net):
    x, t, y = example(digits_net.config)
    without_key = apply(digits_net, x, t, y)
    first, second = (apply(digits_net, x, t, y, jax.random.key(seed)) for seed in (1, 2))
    np.testing.assert_array_equal(without_key, apply(digits_net, x, t, y))
    assert not jnp.allclose(first, second)
    assert not jnp.allclose(first, without_key)
    np.testing.assert_array_equal(first, apply(digits_net, x, t, y, jax.random.key(1)))


def test_labels_change_the_output(digits_net):
    x, t, _ = example(digits_net.config)
    assert not jnp.allclose(apply(digits_net, x, t, jnp.int32(0)), apply(digits_net, x, t, jnp.int32(7)), atol=1e-4)


def test_unconditional_network_ignores_labels():
    config = dataclasses.replace(TINY, num_classes=None)
    net = perturbed(score.ScoreNet(config, key=jax.random.key(0)), jax.random.key(1))
    x, t, _ = example(config)
    np.testing.assert_array_equal(apply(net, x, t, jnp.int32(0)), apply(net, x, t, jnp.int32(2)))


def group_norm_reference(x: np.ndarray, groups: int, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """GroupNorm of one c h w map in float64, straight from the definition."""
    c, h, w = x.shape
    grouped = x.astype(np.float64).reshape(groups, c // groups * h * w)
    mean, variance = grouped.mean(1, keepdims=True), grouped.var(1, keepdims=True)
    normalised = ((grouped - mean) / np.sqrt(variance + 1e-6)).reshape(c, h, w)
    return normalised * weight[:, None, None] + bias[:, None, None]


@settings(max_examples=20, deadline=None)
@given(channels=st.sampled_from([4, 8, 12, 64, 256]), size=st.integers(1, 6), axes=st.sampled_from(["hwc", "chw"]),
       offset=st.sampled_from([0.0, 30.0]), seed=st.integers(0, 2**16))
def test_group_norm_matches_its_definition(channels, size, axes, offset, seed):
    """Per group of C // groups channels (at most 32 groups), over all its pixels, in either layout;
    a mean far from zero beside the spread costs no accuracy (a two-pass variance)."""
    keys = jax.random.split(jax.random.key(seed), 3)
    x = offset + jax.random.normal(keys[0], (channels, size, size))
    layout = Layout(axes)
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), GroupNorm(channels, layout),
                       (jax.random.normal(keys[1], (channels,)), jax.random.normal(keys[2], (channels,))))
    expected = group_norm_reference(np.asarray(x), min(channels // 4, 32), np.asarray(norm.weight), np.asarray(norm.bias))
    got = layout.to_chw(norm(layout.from_chw(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_layouts_agree(digits_net):
    """Parameters do not depend on the layout: the same leaves give the same function."""
    channels_first = score.ScoreNet(
        dataclasses.replace(digits_net.config, layout="channels_first"), key=jax.random.key(0)
    )
    channels_first = jax.tree.unflatten(jax.tree.structure(channels_first), jax.tree.leaves(digits_net))
    x, t, y = example(digits_net.config)
    np.testing.assert_allclose(apply(channels_first, x, t, y), apply(digits_net, x, t, y), rtol=1e-5, atol=1e-5)


def test_reverse_mode_network_gives_the_same_values_and_input_derivatives():
    """Same outputs, VJPs and second derivatives (reverse over reverse) as the
    forward-mode network's (reverse over forward); jax.jvp is refused."""
    net = perturbed(score.ScoreNet(TINY, key=jax.random.key(0)), jax.random.key(1))
    reverse = score.for_reverse_mode(net)
    assert reverse.config.reverse_mode and not net.config.reverse_mode
    x, t, y = example(net.config)
    np.testing.assert_allclose(apply(reverse, x, t, y), apply(net, x, t, y), rtol=1e-5, atol=1e-5)
    probe = jax.random.rademacher(jax.random.key(4), x.shape, dtype=jnp.float32)

    def quadratic_form(model, mode, x_):  # v . (J v), the divergence's probe term
        f = lambda z: model(z, t, y)
        if mode == "forward":
            return jnp.vdot(probe, jax.jvp(f, (x_,), (probe,))[1])
        return jnp.vdot(probe, jax.vjp(f, x_)[1](probe)[0])

    value = eqx.filter_jit(quadratic_form)
    gradient = eqx.filter_jit(jax.grad(quadratic_form, argnums=2))
    np.testing.assert_allclose(value(reverse, "reverse", x), value(net, "forward", x), rtol=1e-4)
    np.testing.assert_allclose(gradient(reverse, "reverse", x), gradient(net, "forward", x), rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="forward-mode"):
        value(reverse, "forward", x)


def test_unknown_weighting_is_rejected():
    net = score.ScoreNet(TINY, key=jax.random.key(0))
    x0, y = jnp.zeros((2, 1, 4, 4)), jnp.zeros(2, dtype=jnp.int32)
    with pytest.raises(ValueError, match="weighting"):
        score.loss(net, SubVPSDE(), x0, y, key=jax.random.key(0), weighting="uniform")


@pytest.fixture(scope="module")
def monte_carlo_losses():
    """Per-batch losses of a fixed tiny network on one image: batches x draws (t, z) each."""
    net = perturbed(score.ScoreNet(TINY, key=jax.random.key(0)), jax.random.key(1))
    sde = SubVPSDE()
    batches, draws = 50, 1000

    @eqx.filter_jit
    def batch_losses(key, weighting, eps):
        x0 = jnp.broadcast_to(jnp.tanh(jax.random.normal(jax.random.key(2), (1, 4, 4))), (draws, 1, 4, 4))
        y = jnp.full(draws, 1)
        keys = jax.random.split(key, batches)
        return jax.vmap(lambda k: score.loss(net, sde, x0, y, key=k, weighting=weighting, eps=eps))(keys)

    return sde, batch_losses


# Not eps = 1e-5: there w(t) ~ 2 / t makes the explicitly weighted loss so heavy-tailed
# (the reason for importance sampling) that 50 k draws underestimate its standard error.
@settings(max_examples=4)
@given(seed=st.integers(0, 2**16), eps=st.sampled_from([1e-3, 1e-2]))
def test_importance_sampled_loss_matches_weighted_loss(monte_carlo_losses, seed, eps):
    """E_uniform[w l] = Z / (T - eps) E_IS[l] (docs/method.md §3), within four standard errors."""
    sde, batch_losses = monte_carlo_losses
    is_key, uniform_key = jax.random.split(jax.random.key(seed))
    normaliser = float(sde.importance_cdf(sde.T, eps)) / (sde.T - eps)
    importance_sampled = normaliser * np.asarray(batch_losses(is_key, "likelihood_is", eps), np.float64)
    weighted = np.asarray(batch_losses(uniform_key, "likelihood", eps), np.float64)
    standard_error = math.hypot(*(np.std(v, ddof=1) / math.sqrt(v.size) for v in (importance_sampled, weighted)))
    assert abs(importance_sampled.mean() - weighted.mean()) < 4 * standard_error


def test_mixture_draws_half_its_times_from_each_weighting():
    """P(t < s) under "mixture" is the mean of the importance density's and the uniform's."""
    from score.objective import _sample_time

    sde, eps, s, n = SubVPSDE(), 1e-5, 0.05, 40_000
    t, weight = jax.jit(lambda k: _sample_time(sde, k, n, "mixture", eps))(jax.random.key(0))
    expected = 0.5 * float(sde.importance_cdf(s, eps) / sde.importance_cdf(sde.T, eps)) + 0.5 * (s - eps) / (sde.T - eps)
    fraction = float(jnp.mean(t < s))
    assert abs(fraction - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
    assert float(jnp.min(t)) >= eps and float(jnp.max(t)) <= sde.T and bool(jnp.all(weight == 1))
