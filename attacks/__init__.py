"""Input gradients through the likelihood ODE, and PGD attacks on any classifier."""

from attacks.batch import MODES, attack_batch, attack_name, image_batch_scores, modes_of
from attacks.gradient import (
    adjoint_of,
    attack_gradient_fn,
    cross_entropy,
    for_input_gradients,
    input_gradient,
)
from attacks.pgd import PGD, pgd, project, random_start

__all__ = [
    "MODES",
    "PGD",
    "adjoint_of",
    "attack_batch",
    "attack_gradient_fn",
    "attack_name",
    "cross_entropy",
    "for_input_gradients",
    "image_batch_scores",
    "input_gradient",
    "modes_of",
    "pgd",
    "project",
    "random_start",
]
