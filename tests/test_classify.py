"""The likelihood classifier on data whose answer is known (issue: tests 3 and 6)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from classify import (
    accuracy,
    batch_class_log_likelihoods,
    class_log_likelihoods,
    marginal_log_likelihood,
    posterior,
    predict,
    shortlist_class_log_likelihoods,
    summarize,
)
from likelihood import ExactTrace, Hutchinson, VmappedSolves
from sde import SubVPSDE
from tests.gaussian_model import exact_noise_fn, gaussian_log_density, ode_log_likelihood

SDE = SubVPSDE()
NUM_CLASSES = 4


@given(seed=st.integers(0, 2**16), num_dims=st.sampled_from([2, 9, 32]), scale=st.floats(0.2, 0.6))
def test_class_log_likelihoods_are_the_closed_form_and_bayes_optimal(seed, num_dims, scale):
    key_means, key_label, key_x = jax.random.split(jax.random.key(seed), 3)
    means = 0.4 * jax.random.normal(key_means, (NUM_CLASSES, num_dims))
    label = jax.random.randint(key_label, (), 0, NUM_CLASSES)
    x = means[label] + scale * jax.random.normal(key_x, (num_dims,))
    true_log_densities = jnp.array([gaussian_log_density(x, m, scale**2) for m in means])
    top_two = jnp.sort(true_log_densities)[-2:]
    assume(float(top_two[1] - top_two[0]) > 0.05)  # a tie has no Bayes-optimal label

    log_probs, _ = class_log_likelihoods(
        exact_noise_fn(SDE, means, scale), SDE, x, key=jax.random.key(1),
        num_classes=NUM_CLASSES, divergence=ExactTrace(), inputs="model",
    )
    expected = jnp.array([ode_log_likelihood(SDE, x, m, scale, 1e-5) for m in means])
    np.testing.assert_allclose(log_probs, expected, atol=1e-3 * num_dims)
    assert int(predict(log_probs)) == int(jnp.argmax(true_log_densities))


def label_blind_noise_fn(x, t, y):
    del y
    # Mixing across pixels, so that different probes give different estimates.
    return jnp.tanh(2 * x + jnp.flip(x)) * (1 - t)


@pytest.mark.parametrize("pixels", [True, False], ids=["pixels", "model-space"])
def test_common_random_numbers_make_label_blind_models_tie_exactly(pixels):
    """A model that ignores y must give K equal numbers under shared noise, not otherwise."""
    x = jnp.arange(12, dtype=jnp.uint8).reshape(3, 4) * 20
    if not pixels:
        x = x / 128.0 - 1
    options = dict(key=jax.random.key(0), num_classes=3, divergence=Hutchinson(1),
                   inputs="pixels" if pixels else "model")
    shared, _ = class_log_likelihoods(label_blind_noise_fn, SDE, x, **options)
    np.testing.assert_array_equal(shared, jnp.full(3, shared[0]))
    separate, _ = class_log_likelihoods(label_blind_noise_fn, SDE, x, share_noise=False, **options)
    assert len(set(np.asarray(separate).tolist())) == 3


def test_batch_of_images_matches_one_image_at_a_time():
    xs = jax.random.randint(jax.random.key(2), (2, 3, 3), 0, 256).astype(jnp.uint8)
    noise_fn = lambda x, t, y: jnp.tanh(x * (1 + y)) * (1 - t)
    keys = jax.random.split(jax.random.key(5), 2)
    options = dict(num_classes=3, batching=VmappedSolves())
    batch, stats = batch_class_log_likelihoods(noise_fn, SDE, xs, keys=keys, **options)
    assert batch.shape == (2, 3) and stats.num_steps.shape == (2, 3)
    one_by_one = jnp.stack(
        [class_log_likelihoods(noise_fn, SDE, x, key=k, **options)[0] for x, k in zip(xs, keys)]
    )
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-6)


@pytest.mark.parametrize("share_noise", [True, False], ids=["shared", "separate"])
def test_shortlist_solves_the_best_labels_of_the_first_pass_exactly(share_noise):
    """The shortlisted labels get the full computation's numbers; the rest the first pass's,
    moved by the image's mean exact-minus-first gap on its shortlist, below the best."""
    xs = jax.random.randint(jax.random.key(3), (3, 2, 2), 0, 256).astype(jnp.uint8)
    noise_fn = lambda x, t, y: jnp.tanh(x * (0.5 + y) + jnp.flip(x)) * (1 - t)
    keys = jax.random.split(jax.random.key(4), 3)
    options = dict(keys=keys, num_classes=4, share_noise=share_noise, divergence=Hutchinson(2),
                   rtol=1e-6, atol=1e-6)
    first_pass = dict(divergence=Hutchinson(1), rtol=1e-2, atol=1e-2)
    full, _ = batch_class_log_likelihoods(noise_fn, SDE, xs, **options)
    rough, _ = batch_class_log_likelihoods(noise_fn, SDE, xs, **(options | first_pass))
    result = shortlist_class_log_likelihoods(noise_fn, SDE, xs, keep=2, first_pass=first_pass,
                                             **options)
    best_two = jnp.argsort(-rough, axis=1)[:, :2]
    expected_mask = jnp.zeros((3, 4), bool).at[jnp.arange(3)[:, None], best_two].set(True)
    np.testing.assert_array_equal(result.shortlisted, expected_mask)
    # The exact pass solves fewer problems together, so its steps differ a little.
    np.testing.assert_allclose(result.log_probs[expected_mask], full[expected_mask], atol=1e-3)
    gap = jnp.sum(jnp.where(expected_mask, result.log_probs - rough, 0), axis=1, keepdims=True) / 2
    np.testing.assert_allclose(result.log_probs[~expected_mask], (rough + gap)[~expected_mask], rtol=1e-6)
    shortlisted_full = jnp.where(expected_mask, full, -jnp.inf)
    np.testing.assert_array_equal(result.prediction, jnp.argmax(shortlisted_full, axis=1))
    np.testing.assert_array_equal(result.prediction, jnp.argmax(result.log_probs, axis=1))
    assert result.exact_stats.num_steps.shape == (3, 2)
    with pytest.raises(ValueError, match=r"keep must lie in \[1, 4\]"):
        shortlist_class_log_likelihoods(noise_fn, SDE, xs, keep=5, first_pass=first_pass, **options)


def test_decision_functions():
    log_probs = jnp.log(jnp.array([[0.2, 0.6, 0.2], [0.5, 0.25, 0.25]]))
    np.testing.assert_array_equal(predict(log_probs), [1, 0])
    np.testing.assert_allclose(posterior(log_probs + 7.0), jnp.exp(log_probs), rtol=1e-6)
    np.testing.assert_allclose(marginal_log_likelihood(log_probs), jnp.full(2, -math.log(3)), rtol=1e-6)
    labels = jnp.array([1, 1])
    assert float(accuracy(log_probs, labels)) == 0.5
    summary = summarize(log_probs, labels, num_dims=1)
    assert float(summary["accuracy"]) == 0.5
    expected_bpd = np.mean([-math.log2(0.6), -math.log2(0.25)]) + 7
    assert float(summary["bits_per_dim"]) == pytest.approx(expected_bpd, rel=1e-6)
    assert float(summary["bits_per_dim_marginal"]) == pytest.approx(math.log2(3) + 7, rel=1e-6)


class TestBadInput:
    log_probs = jnp.zeros((2, 3))

    @pytest.mark.parametrize("label", [-1, 3])
    def test_label_outside_range(self, label):
        with pytest.raises(Exception, match=r"labels must lie in \[0, 3\)"):
            accuracy(self.log_probs, jnp.array([0, label]))
        with pytest.raises(Exception, match=r"labels must lie in \[0, 3\)"):
            summarize(self.log_probs, jnp.array([label, 0]), num_dims=4)

    def test_label_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"labels of shape \(n,\)"):
            accuracy(self.log_probs, jnp.array([0, 1, 2]))

    def test_a_batch_where_one_image_is_expected(self):
        conv = lambda x, t, y: jax.lax.conv(x[None], jnp.ones((1, 1, 3, 3)), (1, 1), "SAME")[0]
        with pytest.raises(ValueError, match=r"one input of shape \(5, 1, 8, 8\)"):
            class_log_likelihoods(
                conv, SDE, jnp.zeros((5, 1, 8, 8), jnp.uint8), key=jax.random.key(0), num_classes=2
            )

    def test_pixels_out_of_range(self):
        with pytest.raises(Exception, match=r"pixels must lie in \[0, 16\)"):
            class_log_likelihoods(
                label_blind_noise_fn, SDE, jnp.array([3, 16]), key=jax.random.key(0),
                num_classes=2, levels=16,
            )

    def test_non_finite_model_space_input(self):
        with pytest.raises(Exception, match="non-finite"):
            class_log_likelihoods(
                label_blind_noise_fn, SDE, jnp.array([0.1, jnp.nan]), key=jax.random.key(0), num_classes=2,
                inputs="model",
            )

    def test_float_inputs_must_be_named_model_space(self):
        """Float pixels are ambiguous (0..255, 0..1 or model space): refused unless named."""
        with pytest.raises(TypeError, match="inputs='pixels' takes integer pixels .* inputs='model'"):
            class_log_likelihoods(label_blind_noise_fn, SDE, jnp.array([0.1, 0.2]), key=jax.random.key(0),
                                  num_classes=2)
        with pytest.raises(TypeError, match="inputs='model' takes floating"):
            class_log_likelihoods(label_blind_noise_fn, SDE, jnp.array([1, 2]), key=jax.random.key(0),
                                  num_classes=2, inputs="model")

    def test_a_nan_score_is_an_error_not_a_prediction(self):
        scores = jnp.array([[-10.0, jnp.nan, -12.0]])
        with pytest.raises(Exception, match="a score is NaN"):
            predict(scores)
        with pytest.raises(Exception, match="a score is NaN"):
            accuracy(scores, jnp.array([1]))


def test_legacy_raw_keys_give_the_typed_keys_numbers():
    """`jax.random.PRNGKey(0)` (raw uint32 words) is the same key as `jax.random.key(0)`."""
    means, x = jnp.array([[-0.5] * 4, [0.5] * 4]), jnp.full(4, 0.4)
    noise_fn = exact_noise_fn(SDE, means, 0.3)
    options = dict(num_classes=2, divergence=Hutchinson(2), rtol=1e-3, atol=1e-3)
    typed, _ = class_log_likelihoods(noise_fn, SDE, x, key=jax.random.key(0), inputs="model", **options)
    raw, _ = class_log_likelihoods(noise_fn, SDE, x, key=jax.random.PRNGKey(0), inputs="model", **options)
    np.testing.assert_array_equal(raw, typed)
    pixels = jnp.full((3, 4), 100, jnp.uint8)
    batch_typed, _ = batch_class_log_likelihoods(noise_fn, SDE, pixels,
                                                 keys=jax.random.split(jax.random.key(1), 3), **options)
    batch_raw, _ = batch_class_log_likelihoods(noise_fn, SDE, pixels,
                                               keys=jax.random.split(jax.random.PRNGKey(1), 3), **options)
    np.testing.assert_array_equal(batch_raw, batch_typed)
    with pytest.raises(TypeError, match=r"expected PRNG keys \(jax.random.key\(seed\)"):
        class_log_likelihoods(noise_fn, SDE, x, key=jnp.arange(3), inputs="model", **options)


def test_a_second_eager_call_with_the_same_shapes_does_not_recompile():
    traces = []

    def noise_fn(x, t, y):
        traces.append(1)  # runs only while JAX traces
        return jnp.tanh(x) * (1 - t) + 0.1 * y

    options = dict(num_classes=2, divergence=Hutchinson(2), rtol=1e-3, atol=1e-3, inputs="model")
    for seed in range(3):
        class_log_likelihoods(noise_fn, SDE, jnp.full(4, 0.1 * seed), key=jax.random.key(seed), **options)
        if seed == 0:
            traced = len(traces)
    assert traced > 0 and len(traces) == traced
