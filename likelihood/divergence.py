"""Divergence estimators for the probability-flow ODE (docs/method.md §4).

An estimator is a small strategy object with two methods:

- `draw_probes(key, shape, dtype)`: the probe vectors v_1..v_n, drawn ONCE per solve
  and held fixed along it;
- `reduce(quadratic_forms)`: turns the n numbers v_i . (J v_i) into the
  divergence channels that ride in the ODE state (one per Hutchinson probe,
  or one exact trace).

`batch_divergence` evaluates a batched function once and all n
Jacobian-vector products against it (forward mode: docs/cpu.md trap 1 finds
v . (J v) through `jax.jvp` far faster inside solver loops than a VJP), laid
out as the estimator's `probe_loop` says (`PROBE_LOOPS`).
"""

import math
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


class Hutchinson(eqx.Module):
    """Hutchinson's estimator E[v^T J v] = tr J with n fixed probes per solve.

    All probes ride in ONE solve as extra channels: the forward pass is shared
    and each probe costs one JVP. Rademacher probes (the default) have lower
    variance than Gaussian ones for the same cost (docs/cpu.md: std 12 vs 34
    on a trained 8x8 model).
    """

    n_probes: int = eqx.field(static=True, default=1)
    kind: Literal["rademacher", "gaussian"] = eqx.field(static=True, default="rademacher")
    # How v . (J v) is taken: "forward", a JVP per probe (fastest for the likelihood
    # itself); "reverse", v . (J^T v) by a VJP per probe (the same number), for
    # networks without forward mode (score.for_reverse_mode), whose input
    # gradients are then reverse over reverse.
    mode: Literal["forward", "reverse"] = eqx.field(static=True, default="forward")
    # How the n forward-mode products are laid out in the compiled program (PROBE_LOOPS).
    probe_loop: Literal["auto", "unrolled", "vmapped", "scanned"] = eqx.field(static=True, default="auto")

    def __check_init__(self):
        if self.n_probes < 1:
            raise ValueError(f"Hutchinson needs n_probes >= 1, got {self.n_probes}")
        if self.kind not in ("rademacher", "gaussian"):
            raise ValueError(f"Hutchinson kind must be 'rademacher' or 'gaussian', got {self.kind!r}")
        if self.mode not in ("forward", "reverse"):
            raise ValueError(f"Hutchinson mode must be 'forward' or 'reverse', got {self.mode!r}")
        if self.probe_loop not in PROBE_LOOPS:
            raise ValueError(f"Hutchinson probe_loop must be one of {PROBE_LOOPS}, got {self.probe_loop!r}")

    def draw_probes(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32
    ) -> Float[Array, "n *shape"]:
        full_shape = (self.n_probes, *shape)
        if self.kind == "rademacher":
            return jax.random.rademacher(key, full_shape, dtype=dtype)
        return jax.random.normal(key, full_shape, dtype)

    def reduce(self, quadratic_forms: Float[Array, "n"]) -> Float[Array, "n"]:
        return quadratic_forms


class ExactTrace(eqx.Module):
    """The exact trace as D JVPs against the standard basis.

    Costs D times one probe (25x at D = 64, 340x at D = 784 per docs/cpu.md):
    for small inputs and as the test oracle.
    """

    def draw_probes(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32
    ) -> Float[Array, "d *shape"]:
        del key  # deterministic
        num_dims = math.prod(shape)
        return jnp.eye(num_dims, dtype=dtype).reshape(num_dims, *shape)

    def reduce(self, quadratic_forms: Float[Array, "d"]) -> Float[Array, "1"]:
        return jnp.sum(quadratic_forms, keepdims=True)


DivergenceEstimator = Hutchinson | ExactTrace

# The layouts of n forward-mode products v . (J v) (`python -m benchmarks.probes`, benchmarks/README.md):
# - "unrolled": n `jax.jvp` calls, whose identical primal passes XLA merges. Fastest on CPU,
#   but the program holds n copies of the tangent pass, so tracing and compiling grow with n
#   (minutes at 30 probes for the cifar10 network).
# - "vmapped": one `jax.linearize`, the n tangents vmapped: one copy, an n times larger batch.
# - "scanned": the linearised function mapped over the probes one at a time (`jax.lax.map`):
#   one copy, the batch of one probe.
# - "auto": unrolled up to `UNROLLED_PROBES[backend]` probes, vmapped beyond.
PROBE_LOOPS = ("auto", "unrolled", "vmapped", "scanned")
# Per backend. On CPU unrolled JVPs ran fastest at every count from 2 probes (2x the vmapped
# ones at 30 on the digits network), for about a second more of compiling per probe at 8x8
# (benchmarks/README.md). Elsewhere one copy of the network in a large batch: the layout an
# accelerator favours, and 31 copies took minutes to compile for the cifar10 network (not
# measured on a GPU here: `python -m benchmarks.probes --preset cifar10` on one decides).
UNROLLED_PROBES = {"cpu": 32}


def layout_of(estimator: DivergenceEstimator, num_probes: int) -> str:
    """The layout `batch_divergence` uses for `num_probes` forward-mode products."""
    chosen = getattr(estimator, "probe_loop", "vmapped")  # the exact trace: D products, vmapped
    if chosen != "auto":
        return chosen
    return "unrolled" if num_probes <= UNROLLED_PROBES.get(jax.default_backend(), 1) else "vmapped"


def batch_divergence(
    fn: Callable[[Float[Array, "b *d"]], Float[Array, "b *d"]],
    xs: Float[Array, "b *d"],
    probes: Float[Array, "b n *d"],
    estimator: DivergenceEstimator,
) -> tuple[Float[Array, "b *d"], Float[Array, "b m"]]:
    """fn(xs) and the divergence channels of each batch element.

    `fn` must act on the batch elementwise (a vmapped network), so its Jacobian
    is block diagonal and each element's v . (J v) only sees its own block.
    With `Hutchinson(mode="reverse")` the products are VJPs (v . (J^T v) is
    the same number) off one forward pass; otherwise JVPs in the layout of
    `layout_of` (all layouts give the same numbers up to float rounding).
    """
    num_probes = probes.shape[1]
    loop = layout_of(estimator, num_probes)
    if getattr(estimator, "mode", "forward") == "reverse":
        values, pullback = jax.vjp(fn, xs)
        tangents = jnp.stack([pullback(probes[:, i])[0] for i in range(num_probes)], axis=1)
    elif loop == "unrolled":
        pairs = [jax.jvp(fn, (xs,), (probes[:, i],)) for i in range(num_probes)]
        values = pairs[0][0]
        tangents = jnp.stack([tangent for _, tangent in pairs], axis=1)
    else:
        values, jvp_fn = jax.linearize(fn, xs)
        if loop == "vmapped":
            tangents = jax.vmap(jvp_fn, in_axes=1, out_axes=1)(probes)
        else:
            tangents = jax.lax.map(jvp_fn, probes.swapaxes(0, 1)).swapaxes(0, 1)
    event_axes = tuple(range(2, probes.ndim))
    quadratic_forms = jnp.sum(probes * tangents, axis=event_axes)
    return values, jax.vmap(estimator.reduce)(quadratic_forms)


def divergence(
    fn: Callable[[Float[Array, "*d"]], Float[Array, "*d"]],
    x: Float[Array, "*d"],
    *,
    key: PRNGKeyArray,
    estimator: DivergenceEstimator,
) -> Float[Array, "m"]:
    """Divergence channels of `fn` at one input: n probe estimates, or [trace]."""
    probes = estimator.draw_probes(key, x.shape, x.dtype)
    _, channels = batch_divergence(jax.vmap(fn), x[None], probes[None], estimator)
    return channels[0]
