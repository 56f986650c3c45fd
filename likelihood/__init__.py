"""Exact log-likelihoods from the probability-flow ODE (docs/method.md §4), and the ELBO (§4.11)."""

from likelihood.dequantization import bits_per_dim, channels_first, dequantize, rescale, to_model_space
from likelihood.keys import typed_keys
from likelihood.divergence import ExactTrace, Hutchinson, batch_divergence, divergence
from likelihood.elbo import draw_pairs, draw_times, elbo, elbo_offset, noised, pair_estimate
from likelihood.ode import (
    LikelihoodStats,
    OneSolve,
    VmappedSolves,
    batch_log_likelihood,
    log_likelihood,
    log_p_norm,
    part_max_norm,
)
from likelihood.sampling import sample_probability_flow
from likelihood.time_variables import DiffusionTime, LogSNRTime, TimeVariable

__all__ = [
    "DiffusionTime",
    "ExactTrace",
    "Hutchinson",
    "LikelihoodStats",
    "LogSNRTime",
    "OneSolve",
    "TimeVariable",
    "VmappedSolves",
    "batch_divergence",
    "batch_log_likelihood",
    "bits_per_dim",
    "channels_first",
    "dequantize",
    "divergence",
    "draw_pairs",
    "draw_times",
    "elbo",
    "elbo_offset",
    "log_likelihood",
    "log_p_norm",
    "noised",
    "pair_estimate",
    "part_max_norm",
    "rescale",
    "sample_probability_flow",
    "to_model_space",
    "typed_keys",
]
