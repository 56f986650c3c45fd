"""attacks.pgd against Foolbox 3.3.4's PGD on a small discriminative Equinox model.

Foolbox is an optional extra (`pip install -e '.[foolbox]'`); without it this
test is skipped with a message.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attacks import PGD, cross_entropy, pgd

fb = pytest.importorskip(
    "foolbox", reason="foolbox is not installed: pip install -e '.[foolbox]' to compare PGD with it"
)

NUM_CLASSES, SHAPE = 4, (1, 6, 6)
ATTACKS = {"linf": (fb.attacks.LinfPGD, 0.1), "l2": (fb.attacks.L2PGD, 0.6)}


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_matches_foolbox(norm):
    mlp = eqx.nn.MLP(int(np.prod(SHAPE)), NUM_CLASSES, 32, 2, key=jax.random.key(0))
    # Inputs spread to [-4, 4]: on [0, 1] the random network's bias decides every label.
    image_logits = lambda image: mlp(8 * (image.ravel() - 0.5))
    logits = jax.jit(jax.vmap(image_logits))
    images = jax.random.uniform(jax.random.key(1), (32, *SHAPE))
    labels = jnp.argmax(logits(images), axis=1)  # clean accuracy 100 %: the attack decides
    foolbox_attack, epsilon = ATTACKS[norm]
    attack = PGD(norm, epsilon=epsilon, step_size=2.5 * epsilon / 10, steps=10, random_start=False)

    fmodel = fb.JAXModel(logits, bounds=(0, 1))
    _, theirs, _ = foolbox_attack(abs_stepsize=attack.step_size, steps=attack.steps, random_start=False)(
        fmodel, images, labels, epsilons=epsilon
    )

    gradients = jax.jit(jax.vmap(jax.grad(lambda x, label: cross_entropy(label)(image_logits(x)))))
    ours, _ = pgd(lambda x, keys: (gradients(x, labels), jnp.zeros(len(x), jnp.int32)), images,
                  keys=jax.random.split(jax.random.key(2), len(images)), attack=attack)
    accuracy = {name: float(jnp.mean(jnp.argmax(logits(x), axis=1) == labels))
                for name, x in (("ours", ours), ("foolbox", theirs))}
    assert accuracy["ours"] == accuracy["foolbox"] < 1.0  # the attack succeeds on some images
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
