"""Cost of one input gradient for all labels against one forward classification (issue 5).

    python -m benchmarks.gradient [--run runs/digits]   # from the repository root

Part 1, per route through the ODE and per network (the digits preset, trained
if --run is given, and a randomly initialised 28x28 `fashion-mnist` network):
wall time of the forward class log-likelihoods of one image under all labels,
and of the gradient of the cross-entropy with respect to the image
(`attacks.gradient`), as a ratio; and the gradient's agreement with central
finite differences of the forward pass in random directions. Each time is
the best of a few calls after compiling, within one run on one machine.

Part 2, the order of the Hessian-vector product that the gradient needs at
every step (the derivative of v . (J v) with respect to x): reverse over
forward (the VJP of the JVP-based vector field, what both routes do through
diffrax) against forward over reverse (a JVP of the network's VJP), on the
vector field of one step for 10 labels, inside a `fori_loop` like a solve.
"""

import argparse
import time
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp

import score
from attacks import cross_entropy, image_log_likelihoods
from experiments.runs import load_run
from likelihood import Hutchinson
from likelihood.divergence import batch_divergence
from sde import SubVPSDE

ADJOINTS = {
    "solver, diffrax's default checkpoints (route 'solver')": diffrax.RecursiveCheckpointAdjoint(),
    "solver, every step stored (checkpoints = max_steps)": diffrax.RecursiveCheckpointAdjoint(checkpoints=4096),
    "continuous adjoint, BacksolveAdjoint (route 'adjoint')": diffrax.BacksolveAdjoint(),
}


def best_seconds(fn, *args, repeats: int):
    """fn(*args) and its best wall time over `repeats` calls after a compiling call."""
    out = jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return out, min(times)


def routes(name, model, image, *, probes: int, tolerance: float, repeats: int, step: float = 1e-2):
    """Part 1 for one network: prints a Markdown table of the routes."""
    options = dict(num_classes=model.config.num_classes, divergence=Hutchinson(probes),
                   rtol=tolerance, atol=tolerance)
    key, sde, objective = jax.random.key(0), SubVPSDE(), cross_entropy(0)

    def loss(x, adjoint=diffrax.RecursiveCheckpointAdjoint()):
        return objective(image_log_likelihoods(model, sde, x, key=key, adjoint=adjoint, **options)[0])

    forward = jax.jit(loss)
    _, forward_seconds = best_seconds(forward, image, repeats=repeats)
    directions = [d / jnp.linalg.norm(d) for d in jax.random.normal(jax.random.key(1), (3, *image.shape))]
    central = [(forward(image + step * d) - forward(image - step * d)) / (2 * step) for d in directions]
    print(f"\n## {name}: 1 image x {options['num_classes']} labels, {probes} probe(s), "
          f"rtol = atol = {tolerance:g}\n")
    print(f"forward classification: {forward_seconds:.3f} s\n")
    print("| route | gradient (s) | gradient / forward | max abs. error vs central differences "
          "| largest directional derivative | cosine to the first route |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    reference = None
    for route, adjoint in ADJOINTS.items():
        gradient_fn = jax.jit(jax.grad(lambda x, adjoint=adjoint: loss(x, adjoint)))
        gradient, seconds = best_seconds(gradient_fn, image, repeats=repeats)
        directional = [float(jnp.vdot(gradient, d)) for d in directions]
        error = max(abs(g - float(c)) for g, c in zip(directional, central))
        reference = gradient if reference is None else reference
        cosine = float(jnp.vdot(gradient, reference) / (jnp.linalg.norm(gradient) * jnp.linalg.norm(reference)))
        print(f"| {route} | {seconds:.3f} | {seconds / forward_seconds:.2f} | {error:.2e} "
              f"| {max(abs(float(c)) for c in central):.2e} | {cosine:.4f} |", flush=True)


def hvp_orders(model, image, *, probes: int, iterations: int = 10):
    """Part 2: one vector-field VJP for 10 labels by both orders, in ms per evaluation."""
    num_classes = model.config.num_classes
    xs = jnp.broadcast_to(image, (num_classes, *image.shape))
    labels = jnp.arange(num_classes)
    t = jnp.float32(0.5)
    fn = lambda x: jax.vmap(lambda x_, y: model(x_, t, y))(x, labels)
    vs = Hutchinson(probes).draw_probes(jax.random.key(2), xs.shape).swapaxes(0, 1)  # b n *d
    cotangent_x = jax.random.normal(jax.random.key(3), xs.shape)
    cotangent_l = jax.random.normal(jax.random.key(4), (num_classes, probes))

    def field(x):
        return batch_divergence(fn, x, vs, Hutchinson(probes))

    def reverse_over_forward(x):
        return jax.vjp(field, x)[1]((cotangent_x, cotangent_l))[0]

    def forward_over_reverse(x):
        _, pullback = jax.vjp(fn, x)
        total = pullback(cotangent_x)[0]
        for i in range(probes):  # d/dx (w . J v) = the JVP in direction v of J^T w, w = a v
            weighted = vs[:, i] * cotangent_l[:, i].reshape(-1, *[1] * image.ndim)
            total = total + jax.jvp(lambda x_: jax.vjp(fn, x_)[1](weighted)[0], (x,), (vs[:, i],))[1]
        return total

    def per_evaluation(body):
        loop = jax.jit(lambda x0: jax.lax.fori_loop(0, iterations, lambda i, x: x + 1e-6 * body(x), x0))
        _, seconds = best_seconds(loop, xs, repeats=2)
        return 1000 * seconds / iterations

    agreement = jnp.max(jnp.abs(reverse_over_forward(xs) - forward_over_reverse(xs)))
    scale = jnp.max(jnp.abs(reverse_over_forward(xs)))
    field_ms = per_evaluation(lambda x: field(x)[0])
    a, b = per_evaluation(reverse_over_forward), per_evaluation(forward_over_reverse)
    print(f"\n## Hessian-vector product order: {num_classes} labels, {probes} probe(s), "
          f"one vector-field evaluation inside a fori_loop\n")
    print("| computation | ms | / vector field |")
    print("| --- | ---: | ---: |")
    print(f"| vector field (forward pass + {probes} JVPs) | {field_ms:.1f} | 1.00 |")
    print(f"| its VJP, reverse over forward (diffrax's, both routes) | {a:.1f} | {a / field_ms:.2f} |")
    print(f"| the same VJP, forward over reverse (JVP of the network's VJP) | {b:.1f} | {b / field_ms:.2f} |")
    print(f"\nmax abs. difference between the two: {float(agreement):.2e} (largest entry {float(scale):.2e})")


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gradient", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a trained digits run (default: a random digits network)")
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=1e-3, help="rtol = atol of every solve")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.run:
        _, digits = load_run(args.run)
    else:
        digits = score.ScoreNet(score.PRESETS["digits"], key=jax.random.key(0))
    image8 = jax.random.uniform(jax.random.key(5), (1, 8, 8))
    net28 = score.ScoreNet(score.PRESETS["fashion-mnist"], key=jax.random.key(0))
    image28 = jax.random.uniform(jax.random.key(6), (1, 28, 28))
    common = dict(probes=args.probes, tolerance=args.tolerance, repeats=args.repeats)
    routes(f"digits ({args.run or 'random init'})", digits, image8, **common)
    hvp_orders(digits, image8, probes=args.probes)
    routes("fashion-mnist 28x28 (random init)", net28, image28, **common)
    hvp_orders(net28, image28, probes=args.probes)


if __name__ == "__main__":
    main()
