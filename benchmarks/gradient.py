"""Cost of one input gradient for all labels against one forward classification (issue 5).

    python -m benchmarks.gradient [--run runs/digits]   # from the repository root

Part 1, per route through the ODE, on the digits preset (trained if --run is
given): wall time of the forward class log-likelihoods of one image under all labels,
and of the gradient of the cross-entropy with respect to the image
(`attacks.gradient`; for an untrained network, whose labels all give the
same log p, the mean log p over labels), as a ratio; and the gradient's agreement with central
finite differences of the forward pass in random directions, in float64
(CHECKS). Each time is the best of a few calls after compiling, within one
run on one machine.

Part 2, the order of the Hessian-vector product that the gradient needs at
every step (the derivative of v . (J v) with respect to x): reverse over
forward (the VJP of the JVP-based vector field), forward over reverse (a JVP
of the network's VJP) and reverse over reverse (VJP probes on the
reverse-mode network, `score.for_reverse_mode`), for one evaluation of the
vector field for 10 labels inside a `fori_loop` like a solve, on the digits
network and a randomly initialised 28x28 `fashion-mnist` one.
"""

import argparse
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

import score
from attacks import cross_entropy
from classify import LikelihoodClassifier
from benchmarks.likelihood import timed
from experiments.runs import load_run
from likelihood import Hutchinson
from likelihood.divergence import batch_divergence

# (name, adjoint, network built for reverse mode): with it, the divergence's probes are
# VJPs and the input gradient runs reverse over reverse (score.for_reverse_mode).
# BacksolveAdjoint is left out: over the forward-mode network it took 41x the forward
# pass on digits at rtol 1e-3 (cosine 0.02 to the solver route's gradient), and it
# cannot run on the reverse-mode network (diffrax takes a JVP of the custom VJP there).
ROUTES = [
    ("solver, forward-mode network", diffrax.RecursiveCheckpointAdjoint(), False),
    ("solver, reverse-mode network (table3's)", diffrax.RecursiveCheckpointAdjoint(), True),
]

# The finite-difference check per network size, in float64. Its error is about
# rtol x |log p| / step plus the step^2 truncation. On digits (|log p| ~ 70 nats,
# derivatives ~ 1) the trained log p curves sharply at the scale of the pixel levels
# (a step of 1e-2 is off by 0.15; benchmarks/README.md), hence step 1e-3 and rtol 1e-8.
# At 28x28 (|log p| ~ 5,600 nats) that rtol would take an estimated hour per solve
# here (NFE grow as rtol^(-1/5), float64 doubles the cost): a loose check instead,
# rtol 1e-5 and a step of 1, assuming that the random network's mean log p is
# nearly quadratic in x (its untrained noise prediction is small), in one direction.
CHECKS = {
    "8": dict(check_tolerance=1e-8, step=1e-3, directions=3),
    "28": dict(check_tolerance=1e-5, step=1.0, directions=1),
}


def routes(name, model, image, objective, *, probes, tolerance, check_tolerance, directions, repeats,
           step, rows=ROUTES):
    """Part 1 for one network: prints a Markdown table of the routes.

    Times are in float32 at `tolerance`. The last row's agreement with central
    differences (in `directions` random unit directions) is checked in float64
    at `check_tolerance` with `step` (CHECKS): in float32 at rtol 1e-5 the
    differences of the trained digits model scattered by up to 0.8 between
    steps of 3e-2, 1e-2 and 3e-3, on derivatives of about 1, because the
    solve's error divided by the step swamps them.
    """
    def loss_fn(model_):
        key, reverse_model = jax.random.key(0), score.for_reverse_mode(model_)

        def loss(x, rtol, adjoint=diffrax.RecursiveCheckpointAdjoint(), reverse=False):
            classifier = LikelihoodClassifier(
                reverse_model if reverse else model_, rtol=rtol, atol=rtol,
                divergence=Hutchinson(probes, mode="reverse" if reverse else "forward"))
            return objective(classifier.image_scores(x, key, adjoint=adjoint)[0])

        return loss

    def gradient_fn(loss, adjoint, reverse):
        return jax.jit(jax.grad(lambda x, rtol: loss(x, rtol, adjoint, reverse)), static_argnums=1)

    loss = loss_fn(model)
    _, forward_seconds = timed(jax.jit(loss, static_argnums=1), image, tolerance, repeats=repeats)
    print(f"\n## {name}: 1 image x {model.config.num_classes} labels, {probes} probe(s), "
          f"rtol = atol = {tolerance:g}\n\nforward classification: {forward_seconds:.3f} s\n")
    print("| route | gradient (s) | gradient / forward | max abs. difference to the last row |")
    print("| --- | ---: | ---: | ---: |")
    timings = [timed(gradient_fn(loss, adjoint, reverse), image, tolerance, repeats=repeats)
               for _, adjoint, reverse in rows]
    for (route, _, _), (gradient, seconds) in zip(rows, timings):
        difference = float(jnp.max(jnp.abs(gradient - timings[-1][0])))
        print(f"| {route} | {seconds:.3f} | {seconds / forward_seconds:.2f} | {difference:.1e} |", flush=True)
    # The last row's gradient against central differences, both in float64 (the other
    # rows compute the same function: tests/test_score.py, and the column above).
    _, adjoint, reverse = rows[-1]
    with jax.enable_x64(True):
        model64 = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)
        loss64, image64 = loss_fn(model64), image.astype(jnp.float64)
        forward64 = jax.jit(loss64, static_argnums=1)
        gradient = gradient_fn(loss64, adjoint, reverse)(image64, check_tolerance)
        for direction in jax.random.normal(jax.random.key(1), (directions, *image.shape), jnp.float64):
            unit = direction / jnp.linalg.norm(direction)
            central = (forward64(image64 + step * unit, check_tolerance)
                       - forward64(image64 - step * unit, check_tolerance)) / (2 * step)
            print(f"float64, rtol = atol = {check_tolerance:g}: gradient . d = {float(jnp.vdot(gradient, unit)):.6f}, "
                  f"central difference (step {step:g}) {float(central):.6f}", flush=True)


def hvp_orders(model, image, *, probes: int, iterations: int):
    """Part 2: one VJP of the vector field for all labels by three orders, in ms per evaluation."""
    num_classes = model.config.num_classes
    xs = jnp.broadcast_to(image, (num_classes, *image.shape))
    labels = jnp.arange(num_classes)
    t = jnp.float32(0.5)
    network = lambda m: lambda x: jax.vmap(lambda x_, y: m(x_, t, y))(x, labels)
    fn, reverse_fn = network(model), network(score.for_reverse_mode(model))
    vs = Hutchinson(probes).draw_probes(jax.random.key(2), xs.shape).swapaxes(0, 1)  # b n *d
    cotangents = (jax.random.normal(jax.random.key(3), xs.shape),
                  jax.random.normal(jax.random.key(4), (num_classes, probes)))

    def field(f, mode):
        return lambda x: batch_divergence(f, x, vs, Hutchinson(probes, mode=mode))

    def reverse_over(f, mode):
        return lambda x: jax.vjp(field(f, mode), x)[1](cotangents)[0]

    def forward_over_reverse(x):
        total = jax.vjp(fn, x)[1](cotangents[0])[0]
        for i in range(probes):  # d/dx (w . J v) = the JVP in direction v of J^T w, w = a v
            weighted = vs[:, i] * cotangents[1][:, i].reshape(-1, *[1] * image.ndim)
            total = total + jax.jvp(lambda x_: jax.vjp(fn, x_)[1](weighted)[0], (x,), (vs[:, i],))[1]
        return total

    def per_evaluation(body):
        loop = jax.jit(lambda x0: jax.lax.fori_loop(0, iterations, lambda i, x: x + 1e-6 * body(x), x0))
        _, seconds = timed(loop, xs, repeats=2)
        return 1000 * seconds / iterations

    def field_value(x):  # both outputs used, so that XLA keeps the JVPs
        values, channels = field(fn, "forward")(x)
        return values + jnp.sum(channels)

    reference = reverse_over(fn, "forward")(xs)
    rows = [
        ("vector field: forward pass + JVP probes", field_value),
        ("its VJP, reverse over forward (forward-mode network)", reverse_over(fn, "forward")),
        ("the same, forward over reverse (JVP of the network's VJP)", forward_over_reverse),
        ("the same, reverse over reverse (reverse-mode network, VJP probes)", reverse_over(reverse_fn, "reverse")),
    ]
    print(f"\n## Order of the Hessian-vector product: {num_classes} labels, {probes} probe(s), "
          f"one evaluation inside a fori_loop\n")
    print("| computation | ms | / vector field | max abs. difference to reverse over forward |")
    print("| --- | ---: | ---: | ---: |")
    field_ms = None
    for name, body in rows:
        ms = per_evaluation(body)
        field_ms = field_ms or ms
        difference = "" if body is field_value else f"{float(jnp.max(jnp.abs(body(xs) - reference))):.1e}"
        print(f"| {name} | {ms:.1f} | {ms / field_ms:.2f} | {difference} |", flush=True)
    print(f"\n(largest entry of the VJP: {float(jnp.max(jnp.abs(reference))):.1e})")


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gradient", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a trained digits run (default: a random digits network)")
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=1e-3, help="rtol = atol of every solve")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="8,28", help="which networks: 8 (digits), 28 (28x28)")
    args = parser.parse_args(argv)
    if args.run:
        _, digits, _ = load_run(args.run)
    else:
        digits = score.ScoreNet(score.PRESETS["digits"], key=jax.random.key(0))
    image8 = jax.random.uniform(jax.random.key(5), (1, 8, 8))
    net28 = score.ScoreNet(score.PRESETS["fashion-mnist"], key=jax.random.key(0))
    # A small random output layer instead of the initial zeros, so that the network
    # shapes the likelihood and its gradient.
    output_kernel = 0.02 * jax.random.normal(jax.random.key(7), net28.output_conv.kernel.shape)
    net28 = eqx.tree_at(lambda net: net.output_conv.kernel, net28, output_kernel)
    image28 = jax.random.uniform(jax.random.key(6), (1, 28, 28))
    common = dict(probes=args.probes, tolerance=args.tolerance)
    sizes = args.sizes.split(",")
    if "8" in sizes:
        # Untrained, the network gives every label the same log p: its cross-entropy is flat.
        objective = cross_entropy(0) if args.run else jnp.mean
        routes(f"digits ({args.run or 'random init'})", digits, image8, objective,
               repeats=args.repeats, **common, **CHECKS["8"])
        hvp_orders(digits, image8, probes=args.probes, iterations=10)
    if "28" not in sizes:
        return
    # A 28x28 classification takes about a minute here and reverse over the forward-mode
    # network ten times that: only the reverse-mode route, timed once. The mean log p
    # over labels costs the same as the cross-entropy (one solve for all labels, one
    # VJP of it).
    routes("fashion-mnist 28x28 (random init)", net28, image28, jnp.mean, rows=ROUTES[1:],
           repeats=1, **common, **CHECKS["28"])
    hvp_orders(net28, image28, probes=args.probes, iterations=1)


if __name__ == "__main__":
    main()
