"""attacks/: input gradients against finite differences, and PGD's geometry."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import score
from attacks import PGD, attack_gradient_fn, cross_entropy, input_gradient, pgd, project
from classify import LikelihoodClassifier
from likelihood import Hutchinson
from sde import SubVPSDE
from tests.gaussian_model import exact_noise_fn

SDE = SubVPSDE()
NUM_CLASSES = 3
TOLERANCE = 1e-6


def gaussian_classes(num_dims: int, seed: int = 0):
    means = 0.5 * jax.random.normal(jax.random.key(seed), (NUM_CLASSES, num_dims))
    return exact_noise_fn(SDE, means, 0.4)


def gaussian_classifier(noise_fn, tolerance: float = TOLERANCE) -> LikelihoodClassifier:
    return LikelihoodClassifier(noise_fn, num_classes=NUM_CLASSES, divergence=Hutchinson(2), rtol=tolerance,
                                atol=tolerance)


@pytest.mark.parametrize("route", ["solver", "adjoint"])
@pytest.mark.parametrize("x64, tolerance, step", [(False, 1e-6, 1e-2), (True, 1e-9, 1e-3)])
def test_input_gradient_matches_central_differences(route, x64, tolerance, step):
    with jax.enable_x64(x64):
        num_dims = 6
        noise_fn = gaussian_classes(num_dims)
        image = jax.random.uniform(jax.random.key(1), (num_dims,), minval=0.2, maxval=0.8)
        key = jax.random.key(2)
        objective = cross_entropy(1)
        classifier = gaussian_classifier(noise_fn, tolerance)
        value = jax.jit(lambda x: objective(classifier.image_scores(x, key)[0]))
        loss, gradient, log_probs, _ = jax.jit(
            lambda x: input_gradient(objective, classifier, x, key=key, route=route))(image)
        assert gradient.dtype == image.dtype
        assert float(loss) == pytest.approx(float(value(image)), rel=1e-6)
        # Each solve is accurate to about tolerance x |log p| (a margin of 10 for the error
        # control's looseness); central differences divide that by the step, and their own
        # truncation error grows as step^2.
        atol = 10 * tolerance * float(jnp.max(jnp.abs(log_probs))) / step + step**2
        for direction_key in jax.random.split(jax.random.key(3), 3):
            direction = jax.random.normal(direction_key, (num_dims,))
            direction = direction / jnp.linalg.norm(direction)
            central = (value(image + step * direction) - value(image - step * direction)) / (2 * step)
            np.testing.assert_allclose(jnp.dot(gradient, direction), central, rtol=0, atol=atol)


@given(seed=st.integers(0, 2**16), margin=st.floats(0.0, 60.0), label=st.integers(0, 9))
def test_cross_entropy_and_its_gradient_stay_accurate_when_the_classifier_is_confident(seed, margin, label):
    """Against float64: the gradient is softmax - one_hot, the label's entry minus the sum of
    the others. Through log_softmax in float32 that entry rounded to 0 past ~16 nats."""
    rng = np.random.default_rng(seed)
    log_probs = 100 + rng.normal(0, 3, 10)
    log_probs[label] = np.max(np.delete(log_probs, label)) + margin
    weights = np.exp(np.delete(log_probs - log_probs[label], label))
    expected = np.insert(weights / (1 + np.sum(weights)), label, 0.0)
    expected[label] = -np.sum(expected)
    loss = cross_entropy(label)
    log_probs32 = jnp.asarray(log_probs, jnp.float32)
    np.testing.assert_allclose(loss(log_probs32), np.log1p(np.sum(weights)), rtol=1e-4)
    np.testing.assert_allclose(jax.grad(loss)(log_probs32), expected, rtol=1e-4, atol=0)


@given(seed=st.integers(0, 2**16), norm=st.sampled_from(["linf", "l2"]), epsilon=st.floats(0.0, 0.5))
def test_projection_and_random_start_stay_in_the_ball_and_the_pixel_range(seed, norm, epsilon):
    attack = PGD(norm=norm, epsilon=epsilon, step_size=0.1, steps=3)
    image_key, candidate_key, start_key = jax.random.split(jax.random.key(seed), 3)
    image = jax.random.uniform(image_key, (2, 3, 3))
    candidate = image + jax.random.normal(candidate_key, image.shape)
    constant = lambda x, k: (jnp.ones_like(x), jnp.ones(len(x), jnp.int32))
    (attacked,), (cost,) = pgd(constant, image[None], keys=start_key[None], attack=attack)
    assert int(cost) == 3  # one per step
    for x in (project(attack, image, candidate), attacked):
        assert float(jnp.min(x)) >= 0 and float(jnp.max(x)) <= 1
        delta = x - image
        size = jnp.max(jnp.abs(delta)) if norm == "linf" else jnp.sqrt(jnp.sum(delta**2))
        assert float(size) <= epsilon * (1 + 1e-5) + 1e-6


def test_pgd_steps_follow_the_gradient():
    """A constant gradient: L-inf walks to the corner of the box, L2 along the gradient."""
    image = jnp.full((4,), 0.5)
    gradient = jnp.array([1.0, -2.0, 0.5, 0.0])
    constant = lambda x, k: (jnp.broadcast_to(gradient, x.shape), jnp.zeros(len(x), jnp.int32))
    keys = jax.random.split(jax.random.key(0), 2)
    linf, _ = pgd(constant, jnp.stack([image, image]), keys=keys,
                  attack=PGD("linf", epsilon=0.1, step_size=0.03, steps=5, random_start=False))
    np.testing.assert_allclose(linf, jnp.stack(2 * [image + 0.1 * jnp.sign(gradient)]), rtol=1e-6)
    l2, _ = pgd(constant, image[None], keys=keys[:1],
                attack=PGD("l2", epsilon=0.2, step_size=0.05, steps=10, random_start=False))
    np.testing.assert_allclose(l2[0], image + 0.2 * gradient / jnp.linalg.norm(gradient), rtol=1e-5)
    with pytest.raises(ValueError, match="one key per image"):
        pgd(constant, image[None], keys=keys, attack=PGD("l2", 0.2, 0.05, 1))


def test_routes_agree_and_modes_differ_as_documented():
    num_dims = 6
    classifier = gaussian_classifier(gaussian_classes(num_dims, seed=4))
    image = jax.random.uniform(jax.random.key(5), (num_dims,), minval=0.2, maxval=0.8)
    key = jax.random.key(6)
    gradients = {
        route: jax.jit(lambda x, route=route: input_gradient(
            cross_entropy(0), classifier, x, key=key, route=route)[1])(image)
        for route in ("solver", "adjoint")
    }
    np.testing.assert_allclose(gradients["adjoint"], gradients["solver"], rtol=1e-2, atol=1e-3)

    # A batch of two: the image above with its key, and another image and label; each
    # image's gradient is the one it has alone.
    other = jax.random.uniform(jax.random.key(8), (num_dims,), minval=0.2, maxval=0.8)
    images, labels, keys = jnp.stack([image, other]), jnp.array([0, 2]), jnp.stack([key, jax.random.key(9)])
    fixed = attack_gradient_fn(classifier, labels, keys=keys, mode="fixed")
    step_keys = [jax.random.split(k, 2) for k in jax.random.split(jax.random.key(7), 2)]
    (first, nfe), (second, _) = fixed(images, step_keys[0]), fixed(images, step_keys[1])
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first[0], gradients["solver"], rtol=1e-5, atol=1e-5)
    alone = attack_gradient_fn(classifier, labels[1:], keys=keys[1:], mode="fixed")
    np.testing.assert_allclose(first[1], alone(images[1:], step_keys[0][1:])[0][0], rtol=1e-5, atol=1e-6)
    eot = attack_gradient_fn(classifier, labels, keys=keys, mode="eot", eot_draws=2)
    (first, eot_nfe), (second, _) = eot(images, step_keys[0]), eot(images, step_keys[1])
    assert not np.allclose(first, second)
    assert nfe.shape == (2,) and np.all(nfe > 0) and np.all(eot_nfe > nfe)  # two solves' evaluations
    with pytest.raises(ValueError, match="mode must be"):
        attack_gradient_fn(classifier, labels, keys=keys, mode="other")
    with pytest.raises(ValueError, match="one key per label"):
        attack_gradient_fn(classifier, labels, keys=key)


def tiny_score_net(dtype) -> "score.ScoreNet":
    """A 3-label 4x4 ScoreNet whose every parameter (the zero-initialised output layer too)
    is randomised, so that its Jacobian, hence the divergence, depends on x."""
    config = score.NetConfig(image_size=4, channels=1, num_classes=3, nf=4, ch_mult=(1,),
                             num_res_blocks=1, attn_resolutions=(), dropout=0.0)
    model = score.ScoreNet(config, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [(leaf + 0.2 * jax.random.normal(k, leaf.shape)).astype(dtype) for leaf, k in zip(leaves, keys)]
    return eqx.combine(jax.tree.unflatten(tree, leaves), static)


@pytest.mark.parametrize("network", ["forward-mode", "reverse-mode"])
def test_input_gradient_reaches_the_hessian_terms(network):
    """The Gaussian classes' noise prediction is affine in x, so the divergence's own
    gradient (the Hessian-vector products) is zero there and a dropped or wrong-signed
    term would pass. A network's Jacobian depends on x: checked in float64 against central
    differences, for the forward-mode network (JVP probes) and for table3's route, the
    reverse-mode network with VJP probes. One probe: compiling costs a network copy per
    probe, and the check is only as strong as the derivative is large against its
    tolerance (asserted: with these keys one probe's is 4.6, two probes' 0.006)."""
    with jax.enable_x64(True):
        tolerance, step = 1e-7, 3e-3  # 5,800 evaluations (9,300 at 1e-8); the derivative is 136x atol
        model = tiny_score_net(jnp.float64)
        mode = "forward" if network == "forward-mode" else "reverse"
        network = model if mode == "forward" else score.for_reverse_mode(model)
        classifier = LikelihoodClassifier(network, divergence=Hutchinson(1, mode=mode), rtol=tolerance,
                                          atol=tolerance)
        image = jax.random.uniform(jax.random.key(1), (1, 4, 4), jnp.float64, 0.2, 0.8)
        key, objective = jax.random.key(2), cross_entropy(1)
        value = jax.jit(lambda x: objective(classifier.image_scores(x, key)[0]))
        _, gradient, log_probs, _ = jax.jit(
            lambda x: input_gradient(objective, classifier, x, key=key))(image)
        atol = 10 * tolerance * float(jnp.max(jnp.abs(log_probs))) / step + step**2  # as above
        direction = jax.random.normal(jax.random.key(3), image.shape, jnp.float64)
        direction = direction / jnp.linalg.norm(direction)
        central = (value(image + step * direction) - value(image - step * direction)) / (2 * step)
        assert abs(central) > 100 * atol  # a wrong or missing term would show
        np.testing.assert_allclose(jnp.vdot(gradient, direction), central, rtol=0, atol=atol)
