"""How the solver's first step moves log p(x | y): diffrax's automatic choice against given ones.

    python -m benchmarks.first_step     # about 15 minutes on 2 cores (mostly the reference)

On the README main job's digits model (runs/digits), the first 20 test images with
table3's dequantisation and probes (4 Rademacher probes, one key per image) are
solved at rtol = atol 1e-3 with the automatic first step and with given ones
(`likelihood.batch_log_likelihood`'s `dt0`), and at rtol 1e-6 as the reference.
Prints the mean function evaluations per solve, the mean and largest |log p - reference| in nats,
and the share of images whose argmax matches the reference's. A given first step
makes an image's solve independent of its batch (benchmarks/README.md); this shows
what it does to the answer.
"""

import jax
import jax.numpy as jnp
import numpy as np

from attacks import image_batch_scores
from classify import LikelihoodClassifier
from experiments.data import load_dataset
from experiments.runs import load_run
from likelihood import Hutchinson


def main() -> None:
    run = load_run("runs/digits")
    test = load_dataset("digits", "test")
    images = jnp.moveaxis(jnp.asarray(test.images[:20], jnp.float32) / 255, -1, 1)
    keys = jax.random.split(jax.random.key(0), 20)

    def solve(rtol, dt0):
        classifier = LikelihoodClassifier(run.model, divergence=Hutchinson(4), rtol=rtol, atol=rtol, dt0=dt0)
        log_probs, nfe = image_batch_scores(classifier, images, keys)
        return np.asarray(log_probs), np.asarray(nfe).mean()

    reference, nfe = solve(1e-6, None)
    print("ref NFE", nfe)
    for dt0 in (None, 0.05, 0.01):
        log_probs, nfe = solve(1e-3, dt0)
        error = np.abs(log_probs - reference)
        print(dt0, "NFE", nfe, "mean |err| %.3f max %.3f" % (np.mean(error), np.max(error)),
              "argmax same", np.mean(log_probs.argmax(1) == reference.argmax(1)))


if __name__ == "__main__":
    main()
