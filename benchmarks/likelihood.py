"""Cost of class log-likelihoods: sbgc's solves against the paper's procedure.

For a randomly initialised convolutional noise model on 8x8 and 28x28 inputs
and 10 labels x a batch of images, prints function evaluations, wall time
and the ratio against the paper's procedure (scipy `solve_ivp` RK45 on the
host over the flattened batch, one solve per probe, same tolerances), plus the
largest log-likelihood difference. Also compares sbgc's two batching
strategies and n probes in one solve against n solves.

    python -m benchmarks.likelihood     # from the repository root; minutes on 2 cores

Ratios come from one run on one machine; absolute times are noisy (sbgc: best of 3).
"""

import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from classify import batch_class_log_likelihoods
from likelihood import Hutchinson, OneSolve, VmappedSolves, dequantize
from sde import SubVPSDE

NUM_CLASSES = 10
TOLERANCE = 1e-5
T0 = 1e-5


class TinyConvNoiseModel(eqx.Module):
    """Two channel-last 3x3 convolutions with time and label biases (docs/cpu.md trap 1).

    The output goes through tanh so that, like a trained model's, eps_hat is O(1).
    """

    kernels: tuple[jax.Array, jax.Array]
    label_bias: jax.Array
    time_scale: jax.Array

    def __init__(self, channels: int, width: int, *, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.kernels = (
            jax.random.normal(k1, (3, 3, channels, width)) / math.sqrt(9 * channels),
            jax.random.normal(k2, (3, 3, width, channels)) / math.sqrt(9 * width),
        )
        self.label_bias = 0.3 * jax.random.normal(k3, (NUM_CLASSES, width))
        self.time_scale = jax.random.normal(k4, (width,))

    def __call__(self, x, t, y):
        conv = lambda h, w: jax.lax.conv_general_dilated(
            h[None], w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )[0]
        h = jnp.transpose(x, (1, 2, 0))  # public c h w, channel-last inside
        h = jax.nn.silu(conv(h, self.kernels[0]) + self.label_bias[y] + jnp.sin(t * self.time_scale))
        return jnp.tanh(jnp.transpose(conv(h, self.kernels[1]), (2, 0, 1)))


def timed(fn, *args, repeats=3):
    """The output and the best wall time of `repeats` calls after compiling."""
    out = jax.block_until_ready(fn(*args))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        seconds.append(time.perf_counter() - start)
    return out, min(seconds)


def sbgc_solve(model, sde, pixels, keys, **options):
    fn = eqx.filter_jit(
        lambda p, k: batch_class_log_likelihoods(
            model, sde, p, keys=k, num_classes=NUM_CLASSES, rtol=TOLERANCE, atol=TOLERANCE, **options
        )
    )
    (log_probs, stats), seconds = timed(fn, pixels, keys)
    return log_probs, int(jnp.max(stats.num_function_evaluations)), seconds


def paper_procedure(model, sde, pixels, keys, n_probes):
    """scipy RK45 over the flattened (images x labels, log p) state, one solve per probe.

    Uses the same dequantisation noise and probes as sbgc's shared-noise default,
    so the log-likelihoods are comparable draw for draw.
    """
    num_images, shape = pixels.shape[0], pixels.shape[1:]
    num_dims = math.prod(shape)
    element_keys = jnp.repeat(keys, NUM_CLASSES, axis=0)
    dequantization_keys, probe_keys = jax.vmap(jax.random.split, out_axes=1)(element_keys)
    images = jax.vmap(dequantize)(dequantization_keys, jnp.repeat(pixels, NUM_CLASSES, axis=0))
    labels = jnp.tile(jnp.arange(NUM_CLASSES), num_images)
    all_probes = jax.vmap(lambda k: Hutchinson(n_probes).draw_probes(k, shape))(probe_keys)
    batch_model = jax.vmap(model, in_axes=(0, None, 0))

    @jax.jit
    def field(t, x, probe):
        eps, jvp = jax.jvp(lambda x_: batch_model(x_, t, labels), (x,), (probe,))
        quadratic = jnp.sum(probe * jvp, axis=tuple(range(1, x.ndim)))
        return sde.probability_flow_drift(x, t, eps), sde.probability_flow_divergence(t, num_dims, quadratic)

    num_elements = images.shape[0]
    total_evaluations, per_probe = 0, []
    start = time.perf_counter()
    for i in range(n_probes):
        probe = all_probes[:, i]

        def rhs(t, state):
            x = jnp.asarray(state[:-num_elements].reshape(images.shape), jnp.float32)
            dx, dl = field(jnp.float32(t), x, probe)
            return np.concatenate([np.asarray(dx, np.float64).ravel(), np.asarray(dl, np.float64)])

        y0 = np.concatenate([np.asarray(images, np.float64).ravel(), np.zeros(num_elements)])
        solution = solve_ivp(rhs, (T0, sde.T), y0, method="RK45", rtol=TOLERANCE, atol=TOLERANCE)
        x_T = solution.y[:-num_elements, -1].reshape(num_elements, -1)
        prior = -0.5 * (num_dims * math.log(2 * math.pi) + np.sum(x_T**2, axis=1))
        per_probe.append(prior + solution.y[-num_elements:, -1])
        total_evaluations += solution.nfev
    seconds = time.perf_counter() - start
    log_probs = np.mean(per_probe, axis=0).reshape(num_images, NUM_CLASSES)
    return log_probs, total_evaluations, seconds


def benchmark(name, shape, width, num_images, n_probes):
    sde = SubVPSDE()
    model = TinyConvNoiseModel(shape[0], width, key=jax.random.key(0))
    pixels = jax.random.randint(jax.random.key(1), (num_images, *shape), 0, 256).astype(jnp.uint8)
    keys = jax.random.split(jax.random.key(2), num_images)
    print(f"\n## {name}: {num_images} images x {NUM_CLASSES} labels, {n_probes} Rademacher probe(s), "
          f"rtol = atol = {TOLERANCE}")
    paper, paper_nfe, paper_seconds = paper_procedure(model, sde, pixels, keys, n_probes)
    rows = [("paper: scipy RK45, one solve per probe", paper_nfe, paper_seconds, 0.0)]
    for label, options in [
        ("sbgc: Dopri5, OneSolve (default)", dict(batching=OneSolve())),
        ("sbgc: Dopri5, VmappedSolves", dict(batching=VmappedSolves())),
    ]:
        log_probs, nfe, seconds = sbgc_solve(model, sde, pixels, keys, divergence=Hutchinson(n_probes), **options)
        rows.append((label, nfe, seconds, float(np.max(np.abs(np.asarray(log_probs) - paper)))))
    print("| procedure | NFE | wall s | time ratio to paper | max abs diff log p (nats) |")
    print("| --- | --- | --- | --- | --- |")
    for label, nfe, seconds, diff in rows:
        print(f"| {label} | {nfe} | {seconds:.2f} | {seconds / paper_seconds:.3f} | {diff:.3g} |")
    print(f"(|log p| ~ {float(np.mean(np.abs(paper))):.0f} nats; NFE of VmappedSolves is its slowest element's)")


def probes_in_one_solve(n_probes=4):
    sde = SubVPSDE()
    model = TinyConvNoiseModel(1, 16, key=jax.random.key(0))
    pixels = jax.random.randint(jax.random.key(1), (4, 1, 8, 8), 0, 256).astype(jnp.uint8)
    keys = jax.random.split(jax.random.key(2), 4)
    _, _, one = sbgc_solve(model, sde, pixels, keys, divergence=Hutchinson(n_probes))
    _, _, single = sbgc_solve(model, sde, pixels, keys, divergence=Hutchinson(1))
    print(f"\n## {n_probes} probes, 8x8: one solve {one:.2f} s vs {n_probes} solves of one probe "
          f"{n_probes * single:.2f} s (ratio {one / (n_probes * single):.2f})")


if __name__ == "__main__":
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(jax.devices())} device(s)")
    benchmark("8x8x1", (1, 8, 8), 16, num_images=16, n_probes=1)
    benchmark("8x8x1", (1, 8, 8), 16, num_images=16, n_probes=3)
    benchmark("28x28x1", (1, 28, 28), 32, num_images=4, n_probes=1)
    probes_in_one_solve()
