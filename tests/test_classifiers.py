"""The classifier values: the same numbers as the functions they compose, and bad input named."""

import dataclasses

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import baseline
import score
from attacks import image_batch_scores
from classify import (ELBOClassifier, LikelihoodClassifier, LogitClassifier, ShortlistClassifier,
                      batch_class_log_likelihoods, pair_log_likelihoods)
from likelihood import Hutchinson, channels_first, to_model_space
from sde import SubVPSDE
from tests.test_attacks import tiny_score_net

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def network():
    return tiny_score_net(jnp.float32)


@pytest.fixture(scope="module")
def pixels():
    return jax.random.randint(jax.random.key(7), (2, 4, 4, 1), 0, 256).astype(jnp.uint8)


def test_scores_are_the_library_functions_numbers(network, pixels):
    """`scores` on n h w c pixels = batch_class_log_likelihoods on their c h w layout, with the
    cost per image: NFE, and NFE x K x (1 forward + 2 probe JVPs) network passes."""
    classifier = LikelihoodClassifier(network, divergence=Hutchinson(2), rtol=TOLERANCE, atol=TOLERANCE)
    keys = jax.random.split(jax.random.key(0), 2)
    result = classifier.scores(pixels, keys)
    expected, stats = batch_class_log_likelihoods(network, SubVPSDE(), channels_first(pixels), keys=keys,
                                                  divergence=Hutchinson(2), rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_array_equal(result.scores, expected)
    np.testing.assert_array_equal(result.prediction, jnp.argmax(expected, axis=1))
    np.testing.assert_array_equal(result.nfe, jnp.max(stats.num_function_evaluations, axis=1))
    np.testing.assert_array_equal(result.passes, result.nfe * 3 * 3)
    assert classifier.kind == "likelihood" and not classifier.deterministic and classifier.num_classes == 3


def solved_shortlist(network, pixels, keys, first_scores, probes: int):
    """The 2 best labels of each of the 2 images by `first_scores`, the exact log p of those
    pairs in one solve with the images' keys (as a shortlist's exact pass), its statistics, and
    the mask of the other labels."""
    shortlist = jnp.argsort(-first_scores, axis=1)[:, :2]
    pair_keys = jax.vmap(lambda k: jnp.stack([k, k]))(keys).reshape(-1)
    expected, stats = pair_log_likelihoods(network, SubVPSDE(), jnp.repeat(channels_first(pixels), 2, axis=0),
                                           shortlist.reshape(-1), keys=pair_keys, divergence=Hutchinson(probes),
                                           rtol=TOLERANCE, atol=TOLERANCE)
    rows = jnp.arange(2)[:, None]
    return shortlist, expected.reshape(2, 2), stats, jnp.ones((2, 3), bool).at[rows, shortlist].set(False)


def moved(first, shortlist, exact):
    """`first` moved by each image's mean exact-minus-first gap on its shortlist (the left-out
    labels' scores, `classify.Shortlisted`)."""
    return first + jnp.mean(exact - jnp.take_along_axis(first, shortlist, axis=1), axis=1, keepdims=True)


def test_a_fixed_grid_first_pass_ranks_by_its_heun_steps(network, pixels):
    """`first_pass_steps=3`: the first pass is 3 Heun steps (6 evaluations, 1 probe, on all 3
    labels); its 2 best labels are solved exactly (one solve of those pairs and keys), and the
    passes count both stages."""
    # The exact pass as the ELBO shortlist's below (1 probe): its pair solve compiles once.
    classifier = LikelihoodClassifier(network, divergence=Hutchinson(1), rtol=TOLERANCE, atol=TOLERANCE,
                                      shortlist=2, first_pass_steps=3)
    keys = jax.random.split(jax.random.key(0), 2)
    result = classifier.scores(pixels, keys)
    first, _ = batch_class_log_likelihoods(network, SubVPSDE(), channels_first(pixels), keys=keys,
                                           divergence=Hutchinson(1), solver=diffrax.Heun(), steps=3)
    shortlist, expected, stats, others = solved_shortlist(network, pixels, keys, first, probes=1)
    np.testing.assert_allclose(result.scores[jnp.arange(2)[:, None], shortlist], expected, rtol=1e-5)
    np.testing.assert_allclose(result.scores[others], moved(first, shortlist, expected)[others], rtol=1e-5)
    np.testing.assert_array_equal(result.prediction, jnp.argmax(result.scores, axis=1))
    np.testing.assert_array_equal(result.shortlisted, ~others)
    exact_nfe = jnp.max(stats.num_function_evaluations)
    np.testing.assert_array_equal(result.nfe, 6 + exact_nfe)
    np.testing.assert_array_equal(result.passes, 6 * 3 * 2 + exact_nfe * 2 * 2)
    with pytest.raises(ValueError, match="needs a shortlist"):
        LikelihoodClassifier(network, first_pass_steps=3)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        LikelihoodClassifier(network, steps=0)


def test_an_elbo_shortlist_solves_its_best_labels_with_the_exact_classifiers_numbers(network, pixels):
    """ShortlistClassifier: the exact log p on the ELBO's 2 best labels of each image (one solve
    of the same (image, label) pairs and keys), the ELBO's scores moved elsewhere, the prediction
    among the shortlist, and both stages' passes."""
    first = ELBOClassifier(network, samples=4)
    exact = LikelihoodClassifier(network, divergence=Hutchinson(1), rtol=TOLERANCE, atol=TOLERANCE)
    classifier = ShortlistClassifier(first, exact, 2)
    keys = jax.random.split(jax.random.key(0), 2)
    result, ranking = classifier.scores(pixels, keys), first.scores(pixels, keys)
    shortlist, expected, stats, others = solved_shortlist(network, pixels, keys, ranking.scores, probes=1)
    # The same solve inside a larger compiled program: equal up to float rounding.
    np.testing.assert_allclose(result.scores[jnp.arange(2)[:, None], shortlist], expected, rtol=1e-5)
    np.testing.assert_allclose(result.scores[others], moved(ranking.scores, shortlist, expected)[others],
                               rtol=1e-5)
    np.testing.assert_array_equal(result.shortlisted, ~others)
    np.testing.assert_array_equal(result.prediction, shortlist[jnp.arange(2), jnp.argmax(expected, 1)])
    exact_nfe = jnp.max(stats.num_function_evaluations)
    np.testing.assert_array_equal(result.passes, ranking.passes + exact_nfe * 2 * 2)
    with pytest.raises(ValueError, match=r"keep must lie in \[1, 3\]"):
        ShortlistClassifier(first, exact, 4)
    with pytest.raises(ValueError, match="no shortlist of its own"):
        ShortlistClassifier(first, dataclasses.replace(exact, shortlist=2), 2)


def test_input_spaces_are_named_and_the_wrong_one_is_refused(network, pixels):
    classifier = LikelihoodClassifier(network, rtol=TOLERANCE, atol=TOLERANCE)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"expected pixels of shape \(n, 4, 4, 1\), n h w c; got \(2, 1, 4, 4\) "
                                         r"\(that is c h w\)"):
        classifier.scores(channels_first(pixels), keys)
    with pytest.raises(TypeError, match="takes integer pixels .* image_scores, model-space inputs .* model_scores"):
        classifier.scores(pixels / 255.0, keys)
    with pytest.raises(ValueError, match="one key per image"):
        classifier.scores(pixels, keys[:1])
    # A single image in the data sets' layout, given to the network itself.
    with pytest.raises(ValueError, match="that is h w c: move the channel axis first"):
        network(jnp.zeros((4, 4, 1)), jnp.float32(0.5), 0)


def test_labels_are_checked_against_the_network(network):
    x = jnp.zeros((1, 1, 4, 4), jnp.uint8)
    for label in (3, -1):
        with pytest.raises(Exception, match=r"labels must lie in \[0, 3\)"):
            pair_log_likelihoods(network, SubVPSDE(), x, jnp.array([label]), keys=jax.random.key(0)[None])
    with pytest.raises(ValueError, match="num_classes=12, but the network has 3 classes"):
        batch_class_log_likelihoods(network, SubVPSDE(), x, keys=jax.random.key(0)[None], num_classes=12)
    with pytest.raises(ValueError, match=r"the label must be one integer in \[0, 3\), got 99"):
        network(jnp.zeros((1, 4, 4)), jnp.float32(0.5), 99)
    unconditional = score.ScoreNet(dataclasses.replace(network.config, num_classes=None), key=jax.random.key(0))
    with pytest.raises(ValueError, match="the network is unconditional"):
        LikelihoodClassifier(unconditional)


def test_a_fresh_score_net_gives_every_label_the_same_log_likelihood(pixels):
    """DDPM++ zero-initialises its output layers: an untrained ScoreNet predicts zero noise for
    every label, so its log p ties across labels (the ScoreNet docstring says so). A first
    experiment needs a trained (or perturbed) network."""
    fresh = score.ScoreNet(tiny_score_net(jnp.float32).config, key=jax.random.key(0))
    classifier = LikelihoodClassifier(fresh, rtol=TOLERANCE, atol=TOLERANCE)
    log_probs = classifier.scores(pixels, jax.random.split(jax.random.key(0), 2)).scores
    np.testing.assert_array_equal(log_probs, jnp.broadcast_to(log_probs[:, :1], log_probs.shape))


def test_logit_classifier_reads_pixels_at_their_midpoints_in_every_space():
    config = baseline.WRNConfig(depth=10, width=1, num_classes=3, channels=1, image_size=4)
    network = baseline.WideResNet(config, key=jax.random.key(0))
    pixels = jax.random.randint(jax.random.key(1), (2, 4, 4, 1), 0, 256).astype(jnp.uint8)
    classifier = LogitClassifier(network)
    result = classifier.scores(pixels)
    expected = jax.vmap(network)(channels_first(2 * (pixels.astype(jnp.float32) + 0.5) / 256 - 1))
    np.testing.assert_allclose(result.scores, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(result.passes, [1, 1])
    intensities = channels_first(pixels.astype(jnp.float32) / 255)
    from_images = image_batch_scores(classifier, intensities, jax.random.split(jax.random.key(0), 2))
    np.testing.assert_allclose(from_images[0], result.scores, rtol=1e-5, atol=1e-5)
    model_space = channels_first(to_model_space(pixels, 0.5))
    np.testing.assert_array_equal(classifier.model_scores(model_space).scores, result.scores)
    assert classifier.kind == "logits" and classifier.deterministic
