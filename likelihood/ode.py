"""log p(x) from the probability-flow ODE (docs/method.md §4).

The augmented state [x, l] is integrated from t0 to T:

    dx/dt = -beta x / 2 + (g^2 / (2 sigma)) eps_hat(x, t)
    dl/dt = div_x of the same, one channel per divergence probe

and log p(x) = log N(x(T); 0, I) + mean over channels of l(T).

A batch is solved in one of two ways, chosen by a strategy object:
`OneSolve` puts the whole batch in one state that shares step sizes (the
reference's choice; in `benchmarks/likelihood.py` it needed 0-17 % fewer
evaluations than the vmapped solves' slowest element) and `VmappedSolves` gives every element its own step-size control.
"""

import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from likelihood.keys import typed_keys
from likelihood.divergence import DivergenceEstimator, Hutchinson, batch_divergence
from likelihood.time_variables import DiffusionTime, TimeVariable, in_time_variable
from sde import AbstractSDE

NoiseFn = Callable[[Float[Array, "*d"], Float[Array, ""]], Float[Array, "*d"]]
ConditionalNoiseFn = Callable[[Float[Array, "*d"], Float[Array, ""], Any], Float[Array, "*d"]]


class LikelihoodStats(eqx.Module):
    """Work done by a solve, and the per-channel answers.

    `num_function_evaluations` counts evaluations of the vector field; in a
    `OneSolve` each one runs the network on the whole batch.
    `channel_log_probs` holds log p from each divergence channel (one per
    Hutchinson probe); the returned log p is their mean.
    """

    num_steps: Int[Array, "*b"]
    num_accepted_steps: Int[Array, "*b"]
    num_rejected_steps: Int[Array, "*b"]
    num_function_evaluations: Int[Array, "*b"]
    channel_log_probs: Float[Array, "*b m"]


# Error norms for the step-size controller (docs/method.md §4.3). Each gets the state's error
# scaled by atol + rtol |y|, as the pair (pixels, log p channels), and returns one number that
# must stay below 1. diffrax's default RMS weighs the log p entries as single pixels among
# thousands (docs/cpu.md trap 4); the two others control them directly.
def log_p_norm(scaled_error: PyTree) -> Array:
    """The RMS of the log p entries alone: the pixels' errors steer the step size only through
    what they do to log p."""
    _, log_p_error = scaled_error
    return optx.rms_norm(log_p_error)


def part_max_norm(scaled_error: PyTree) -> Array:
    """The larger of the pixels' RMS and the log p entries' RMS: log p weighs as much as every
    pixel together."""
    pixel_error, log_p_error = scaled_error
    return jnp.maximum(optx.rms_norm(pixel_error), optx.rms_norm(log_p_error))


def _evaluations_per_step(solver: diffrax.AbstractRungeKutta) -> tuple[int, int]:
    """(evaluations before the first step, evaluations per step attempt).

    An FSAL tableau evaluates once at the start and reuses its last stage as
    the next step's first. tests/test_likelihood.py checks the count against
    evaluations observed at run time.
    """
    fsal = int(solver.tableau.fsal)
    return fsal, solver.tableau.num_stages - fsal


def _solve_batch(
    noise_fn: ConditionalNoiseFn,
    sde: AbstractSDE,
    xs: Float[Array, "b *d"],
    conditions: PyTree,
    probes: Float[Array, "b n *d"],
    divergence: DivergenceEstimator,
    t0: Float[Array, ""],
    rtol: float,
    atol: float,
    solver: diffrax.AbstractRungeKutta,
    max_steps: int,
    norm: Callable[[PyTree], Array],
    adjoint: diffrax.AbstractAdjoint,
    dt0: float | None,
    time_variable: TimeVariable,
    steps: int | None,
) -> tuple[Float[Array, "b"], LikelihoodStats]:
    """One diffrax solve of the augmented ODE for a whole batch."""
    num_dims = math.prod(xs.shape[1:])

    # The network, labels and probes travel as `args`, not in a closure: the continuous
    # adjoint (diffrax.BacksolveAdjoint) only accepts traced values that come that way.
    def vector_field(t, state, args):
        noise_fn_, conditions_, probes_ = args
        batch_noise = jax.vmap(noise_fn_, in_axes=(0, None, 0))
        x, _ = state
        eps_hat, eps_divergence = batch_divergence(
            lambda x_: batch_noise(x_, t, conditions_), x, probes_, divergence
        )
        dx = sde.probability_flow_drift(x, t, eps_hat)
        return dx, sde.probability_flow_divergence(t, num_dims, eps_divergence)

    num_channels = jax.eval_shape(jax.vmap(divergence.reduce), probes[:, :, 0]).shape[1]
    state0 = (xs, jnp.zeros((xs.shape[0], num_channels), xs.dtype))
    s0, s1 = time_variable.interval(sde, t0)
    if steps is None:
        controller = diffrax.PIDController(rtol=rtol, atol=atol, norm=norm)
    else:  # the grid's ends are the interval's exactly, so no float-rounding sliver of a step is added
        controller, dt0 = diffrax.StepTo(jnp.linspace(s0, s1, steps + 1)), None
    # Jitted on its own so that its every trace (diffrax traces the field several times, and a
    # gradient through the solver's checkpointed loop traces its derivative several times more)
    # reuses one jaxpr and JAX's cached transforms of it: table3's input gradient traced in
    # 16 s instead of 38-42 s, and XLA inlines the call (results/suite/tracing.txt).
    field = eqx.filter_jit(vector_field)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(in_time_variable(field, time_variable, sde)),
        solver,
        t0=s0,
        t1=s1,
        dt0=dt0,
        y0=state0,
        args=(noise_fn, conditions, probes),
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
        adjoint=adjoint,
    )
    x_T = solution.ys[0][-1]
    delta_log_p = solution.ys[1][-1]
    prior = jax.vmap(sde.prior_log_prob)(x_T)
    channel_log_probs = prior[:, None] + delta_log_p
    log_probs = jnp.mean(channel_log_probs, axis=1)

    # The checks ride on a scalar zero added to the result: a check on the batch itself
    # would pin it to one device under sharding (an SPMD rematerialisation).
    checked_zero = eqx.error_if(
        jnp.zeros((), log_probs.dtype),
        jnp.any(solution.result != diffrax.RESULTS.successful),
        f"the probability-flow solve failed (max_steps={max_steps} reached, or the step "
        "size collapsed on non-finite values): raise max_steps, loosen rtol/atol, or "
        "check that noise_fn is finite on its inputs",
    )
    checked_zero = eqx.error_if(
        checked_zero,
        ~jnp.all(jnp.isfinite(log_probs)),
        "the probability-flow solve returned a non-finite log-likelihood: "
        "noise_fn produced NaN or inf along the trajectory",
    )
    log_probs = log_probs + checked_zero

    initial_evaluations, per_step = _evaluations_per_step(solver)
    batch = xs.shape[0]

    def per_element(value):
        return jnp.broadcast_to(jnp.asarray(value), (batch,))

    stats = LikelihoodStats(
        num_steps=per_element(solution.stats["num_steps"]),
        num_accepted_steps=per_element(solution.stats["num_accepted_steps"]),
        num_rejected_steps=per_element(solution.stats["num_rejected_steps"]),
        num_function_evaluations=per_element(
            initial_evaluations + per_step * solution.stats["num_steps"]
        ),
        channel_log_probs=channel_log_probs,
    )
    return log_probs, stats


class OneSolve(eqx.Module):
    """The whole batch in one ODE state, sharing step sizes (the reference's way).

    Each element's answer then depends slightly on its batch mates, through the
    shared steps.
    """

    def __call__(self, solve_batch, xs, conditions, probes):
        return solve_batch(xs, conditions, probes)


class VmappedSolves(eqx.Module):
    """One solve per element under `jax.vmap`: each keeps its own step sizes.

    The loop still runs until the slowest element finishes, so the wall time
    follows the slowest element's step count.
    """

    def __call__(self, solve_batch, xs, conditions, probes):
        def solve_one(x, condition, probe):
            add_axis = lambda leaf: jnp.asarray(leaf)[None]
            outputs = solve_batch(add_axis(x), jax.tree.map(add_axis, condition), add_axis(probe))
            return jax.tree.map(lambda leaf: leaf[0], outputs)

        return jax.vmap(solve_one)(xs, conditions, probes)


Batching = OneSolve | VmappedSolves


def _check_inputs(noise_fn: ConditionalNoiseFn, x, condition, t0: float, sde: AbstractSDE):
    """Static checks with messages that say what was wrong."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"x must be floating-point model-space data, got dtype {x.dtype}; "
            "dequantize integer pixels first (likelihood.dequantize)"
        )
    if not 0 < t0 < sde.T:
        raise ValueError(f"t0 must lie in (0, T={sde.T}), got {t0}")
    try:
        out = jax.eval_shape(noise_fn, x, jnp.zeros(()), condition)
    except Exception as error:
        raise ValueError(
            f"noise_fn cannot be applied to one input of shape {x.shape}: {error}. "
            "The likelihood functions take unbatched c h w inputs (a leading batch axis in the "
            "batch_* functions)."
        ) from error
    if out.shape != x.shape:
        raise ValueError(
            f"noise_fn maps an input of shape {x.shape} to shape {out.shape}; "
            "the noise prediction must have the input's shape"
        )


@eqx.filter_jit  # eager calls with the same functions and shapes reuse one compilation
def batch_log_likelihood(
    noise_fn: ConditionalNoiseFn,
    sde: AbstractSDE,
    xs: Float[Array, "b *d"],
    conditions: PyTree,
    *,
    keys: PRNGKeyArray,
    batching: Batching = OneSolve(),
    divergence: DivergenceEstimator = Hutchinson(),
    t0: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: diffrax.AbstractRungeKutta = diffrax.Dopri5(),
    max_steps: int = 4096,
    norm: Callable[[PyTree], Array] = optx.rms_norm,
    adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint(),
    dt0: float | None = None,
    time_variable: TimeVariable = DiffusionTime(),
    steps: int | None = None,
) -> tuple[Float[Array, "b"], LikelihoodStats]:
    """log p(x_i | c_i) in nats for a batch, `noise_fn(x, t, c)` on one input.

    `conditions` is a pytree with a leading batch axis (labels, for a
    classifier). `keys` holds one PRNG key per element; its probes come from
    it, so equal keys give equal probes (common random numbers). `adjoint` is
    how reverse-mode derivatives go through the solve (diffrax's; see `attacks`).
    `time_variable` is the variable the ODE is solved in (`likelihood.time_variables`), and
    `dt0` the first step's size in it. None (the default) lets diffrax choose it
    from a difference quotient of two evaluations, which float rounding moves
    enough to shift every later step, so two solves of one input in batches
    of other sizes can differ by about the tolerance's error
    (benchmarks/README.md, `benchmarks.attacks --dt0`). With a given `dt0`
    whose first attempt is rejected, diffrax evaluates the start once more
    than `num_function_evaluations` counts (seen in a throwaway count on a
    tanh field with dt0 = 0.5; tests/test_likelihood.py checks 0.05 exact).
    `steps` puts the solve on a fixed grid of that many equal steps in the time
    variable instead (rtol, atol, norm and dt0 then do nothing): a cheap, biased
    solve whose cost is known in advance, for a shortlist's first pass (§4.8).
    """
    xs, keys = jnp.asarray(xs), typed_keys(keys)
    _check_inputs(noise_fn, xs[0], jax.tree.map(lambda c: c[0], conditions), float(t0), sde)
    # The check rides on the scalar start time, which every solve needs: passing the
    # whole batch through it would pin the batch to one device under sharding.
    start = eqx.error_if(
        jnp.asarray(t0, xs.dtype), ~jnp.all(jnp.isfinite(xs)), "x has non-finite (NaN or inf) entries"
    )
    probes = jax.vmap(lambda key: divergence.draw_probes(key, xs.shape[1:], xs.dtype))(keys)

    def solve_batch(xs_, conditions_, probes_):
        return _solve_batch(
            noise_fn, sde, xs_, conditions_, probes_, divergence,
            start, rtol, atol, solver, max_steps, norm, adjoint, dt0, time_variable, steps,
        )

    return batching(solve_batch, xs, conditions, probes)


@eqx.filter_jit  # eager calls with the same functions and shapes reuse one compilation
def log_likelihood(
    noise_fn: NoiseFn,
    sde: AbstractSDE,
    x: Float[Array, "*d"],
    *,
    key: PRNGKeyArray,
    **options,
) -> tuple[Float[Array, ""], LikelihoodStats]:
    """log p(x) in nats of ONE model-space input, and the solve's statistics.

    `noise_fn(x, t)` predicts the noise on one unbatched input (a network with
    its label bound, or an analytic function). `options` are those of
    `batch_log_likelihood`: divergence, t0, rtol, atol, solver, max_steps,
    norm, adjoint, dt0, time_variable, steps. A batch is `jax.vmap` over this function (vmapped solves) or
    `batch_log_likelihood` (one shared solve).
    """
    x = jnp.asarray(x)
    log_probs, stats = batch_log_likelihood(
        lambda x_, t, _: noise_fn(x_, t), sde, x[None], jnp.zeros(1), keys=typed_keys(key)[None],
        **options
    )
    return log_probs[0], jax.tree.map(lambda leaf: leaf[0], stats)
