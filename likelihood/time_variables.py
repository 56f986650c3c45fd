"""The variable the probability-flow ODE is solved in (docs/method.md §4.3).

The solver integrates d(state)/ds = f(t(s), state) dt/ds from s(t0) to s(T):
the same solution, so the same log p up to the solver's error, but other step
sizes for the same tolerance. Each variable is a small strategy object with
`interval(sde, t0)`, the solve's (s0, s1), and `time(sde, s)`, the diffusion
time at s (increasing in s); dt/ds comes from differentiating `time`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from sde import AbstractSDE


class DiffusionTime(eqx.Module):
    """s = t: the diffusion time itself (the default, and the paper's)."""

    def interval(self, sde: AbstractSDE, t0: Float[ArrayLike, ""]) -> tuple[Float[ArrayLike, ""], float]:
        return t0, sde.T

    def time(self, sde: AbstractSDE, s: Float[Array, ""]) -> Float[Array, ""]:
        return s


class LogSNRTime(eqx.Module):
    """s = -lambda(t), minus the log signal-to-noise ratio log(alpha^2 / sigma^2).

    It spends the steps where the noise level changes fastest, the way the
    samplers of diffusion models space theirs; `benchmarks.cost` measures
    whether it needs fewer of them for the same error in log p.
    """

    def interval(self, sde: AbstractSDE, t0: Float[ArrayLike, ""]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        return -sde.log_snr(t0), -sde.log_snr(sde.T)

    def time(self, sde: AbstractSDE, s: Float[Array, ""]) -> Float[Array, ""]:
        return sde.time_from_log_snr(-s)


TimeVariable = DiffusionTime | LogSNRTime


def in_time_variable(field, variable: TimeVariable, sde: AbstractSDE):
    """The vector field `field(t, state, args)` in the variable s: f(t(s), state) dt/ds."""
    if isinstance(variable, DiffusionTime):
        return field

    def field_in_s(s, state, args):
        t, dt_ds = jax.jvp(lambda s_: variable.time(sde, s_), (s,), (jnp.ones_like(s),))
        return jax.tree.map(lambda d: d * dt_ds, field(t, state, args))

    return field_in_s
