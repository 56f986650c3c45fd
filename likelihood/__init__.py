"""Exact log-likelihoods from the probability-flow ODE (docs/method.md §4)."""

from likelihood.dequantization import bits_per_dim, channels_first, dequantize, rescale, to_model_space
from likelihood.keys import typed_keys
from likelihood.divergence import ExactTrace, Hutchinson, batch_divergence, divergence
from likelihood.ode import (
    LikelihoodStats,
    OneSolve,
    VmappedSolves,
    batch_log_likelihood,
    log_likelihood,
)
from likelihood.sampling import sample_probability_flow

__all__ = [
    "ExactTrace",
    "Hutchinson",
    "LikelihoodStats",
    "OneSolve",
    "VmappedSolves",
    "batch_divergence",
    "batch_log_likelihood",
    "bits_per_dim",
    "channels_first",
    "dequantize",
    "divergence",
    "log_likelihood",
    "rescale",
    "sample_probability_flow",
    "to_model_space",
    "typed_keys",
]
