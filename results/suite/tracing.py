"""Tracing and compiling time of table3's input gradient (one tiny digits run, 1 probe,
rtol = atol = 1e-2, one image), for the code at the checkout this runs from:
    PYTHONPATH=CHECKOUT .venv/bin/python results/suite/tracing.py RUN
RUN is a tiny run (tests/conftest.py's TINY_TRAINING, 4 steps)."""

import sys
import time

import jax
import jax.numpy as jnp

from attacks import gradient as module
from attacks.gradient import _gradients_and_costs, for_input_gradients
from experiments import estimates
from experiments.runs import load_run

options = estimates.resolve(estimates.EstimateOptions(probes=1, rtol=1e-2, atol=1e-2, shortlist=0), "digits")
classifier = for_input_gradients(estimates.classifier_of(load_run(sys.argv[1]), options), "solver")
images, labels = jnp.full((1, 1, 8, 8), 0.5), jnp.zeros((1,), jnp.int32)
keys = jax.random.split(jax.random.key(0), 1)
start = time.perf_counter()
lowered = _gradients_and_costs.lower(classifier, images, labels, keys, "solver")
traced = time.perf_counter()
compiled = lowered.compile()
done = time.perf_counter()
gradient, nfe = compiled(classifier, images, labels, keys, "solver")  # the compiled program, not a second compile
print(f"{module.__file__}: traced in {traced - start:.1f} s, compiled in {done - traced:.1f} s; "
      f"gradient sum {float(jnp.sum(gradient)):.4f}, {int(nfe[0])} evaluations")
