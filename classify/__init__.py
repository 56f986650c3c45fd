"""Classification by likelihood: argmax_y log p(x | y) (SPEC.md §4)."""

from classify.decision import accuracy, marginal_log_likelihood, posterior, predict, summarize
from classify.likelihoods import (
    batch_class_log_likelihoods,
    class_log_likelihoods,
    pair_log_likelihoods,
)
from classify.shortlist import Shortlisted, shortlist_class_log_likelihoods

__all__ = [
    "accuracy",
    "batch_class_log_likelihoods",
    "class_log_likelihoods",
    "marginal_log_likelihood",
    "pair_log_likelihoods",
    "posterior",
    "predict",
    "Shortlisted",
    "shortlist_class_log_likelihoods",
    "summarize",
]
