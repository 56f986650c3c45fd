"""Input gradients through the likelihood ODE, and PGD attacks."""

from attacks.gradient import (
    adjoint_of,
    attack_gradient_fn,
    cross_entropy,
    image_log_likelihoods,
    input_gradient,
)
from attacks.pgd import PGD, pgd, project, random_start

__all__ = [
    "PGD",
    "adjoint_of",
    "attack_gradient_fn",
    "cross_entropy",
    "image_log_likelihoods",
    "input_gradient",
    "pgd",
    "project",
    "random_start",
]
