"""Samples by integrating the probability-flow ODE backwards (docs/method.md §1).

The same ODE that gives log p(x) maps prior draws at T to data at t ~ 0: here
without the divergence channels, so one evaluation of the network per stage.
"""

import diffrax
import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from likelihood.ode import ConditionalNoiseFn
from sde import AbstractSDE


def sample_probability_flow(
    noise_fn: ConditionalNoiseFn,
    sde: AbstractSDE,
    conditions: PyTree,
    shape: tuple[int, ...],
    *,
    key: PRNGKeyArray,
    t_end: float = 1e-3,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    solver: diffrax.AbstractSolver = diffrax.Tsit5(),
    max_steps: int = 4096,
) -> Float[Array, "b *shape"]:
    """One sample per element of `conditions` (leading axis b), in model space.

    `noise_fn(x, t, c)` acts on one input of `shape`. All samples share one
    adaptive solve from T down to `t_end`; the loose default tolerances are
    plenty for pictures (likelihoods use 1e-5).
    """
    batch = jax.tree.leaves(conditions)[0].shape[0]
    x_T = sde.prior_sample(key, (batch, *shape))
    batch_noise = jax.vmap(noise_fn, in_axes=(0, None, 0))

    def vector_field(t, x, args):
        return sde.probability_flow_drift(x, t, batch_noise(x, t, conditions))

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0=sde.T,
        t1=t_end,
        dt0=None,
        y0=x_T,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    return solution.ys[-1]
