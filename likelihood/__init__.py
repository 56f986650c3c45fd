"""Exact log-likelihoods from the probability-flow ODE (SPEC.md §4)."""

from likelihood.dequantization import bits_per_dim, dequantize
from likelihood.keys import typed_keys
from likelihood.divergence import ExactTrace, Hutchinson, batch_divergence, divergence
from likelihood.ode import (
    LikelihoodStats,
    OneSolve,
    VmappedSolves,
    batch_log_likelihood,
    log_likelihood,
)

__all__ = [
    "ExactTrace",
    "Hutchinson",
    "LikelihoodStats",
    "OneSolve",
    "VmappedSolves",
    "batch_divergence",
    "batch_log_likelihood",
    "bits_per_dim",
    "dequantize",
    "divergence",
    "log_likelihood",
    "typed_keys",
]
