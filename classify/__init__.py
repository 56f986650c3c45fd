"""Classification by likelihood: argmax_y log p(x | y) (docs/method.md §4.6).

`LikelihoodClassifier`, `ELBOClassifier`, `ShortlistClassifier` and `LogitClassifier` are the classifier values that
research code and every table call; the functions below them compose the
likelihood of each label by hand.
"""

from classify.classifiers import LOG_DENSITY_KINDS, LikelihoodClassifier, LogitClassifier, Scores
from classify.elbo import ELBOClassifier
from classify.decision import accuracy, marginal_log_likelihood, posterior, predict, summarize
from classify.likelihoods import (
    batch_class_log_likelihoods,
    class_log_likelihoods,
    pair_log_likelihoods,
)
from classify.shortlist import Shortlisted, shortlist_class_log_likelihoods, solve_shortlist
from classify.staged import ShortlistClassifier

Classifier = LikelihoodClassifier | ELBOClassifier | ShortlistClassifier | LogitClassifier

__all__ = [
    "Classifier",
    "ELBOClassifier",
    "LOG_DENSITY_KINDS",
    "LikelihoodClassifier",
    "LogitClassifier",
    "Scores",
    "accuracy",
    "batch_class_log_likelihoods",
    "class_log_likelihoods",
    "marginal_log_likelihood",
    "pair_log_likelihoods",
    "posterior",
    "predict",
    "ShortlistClassifier",
    "Shortlisted",
    "shortlist_class_log_likelihoods",
    "solve_shortlist",
    "summarize",
]
