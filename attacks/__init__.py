"""Input gradients through the likelihood ODE, and PGD attacks."""
