"""Cost of one input gradient for all labels against one forward classification (issue 5).

    python -m benchmarks.gradient [--run runs/digits]   # from the repository root

Part 1, per route through the ODE, on the digits preset (trained if --run is
given): wall time of the forward class log-likelihoods of one image under all labels,
and of the gradient of the cross-entropy with respect to the image
(`attacks.gradient`), as a ratio; and the gradient's agreement with central
finite differences of the forward pass in random directions. Each time is
the best of a few calls after compiling, within one run on one machine.

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
from attacks import cross_entropy, image_log_likelihoods
from benchmarks.likelihood import timed
from experiments.runs import load_run
from likelihood import Hutchinson
from likelihood.divergence import batch_divergence
from sde import SubVPSDE

# (name, adjoint, network built for reverse mode): with it, the divergence's probes are
# VJPs and the input gradient runs reverse over reverse (score.for_reverse_mode).
# BacksolveAdjoint is left out: over the forward-mode network it took 41x the forward
# pass on digits at rtol 1e-3 (cosine 0.02 to the solver route's gradient), and it
# cannot run on the reverse-mode network (diffrax takes a JVP of the custom VJP there).
ROUTES = [
    ("solver, forward-mode network", diffrax.RecursiveCheckpointAdjoint(), False),
    ("solver, reverse-mode network (table3's)", diffrax.RecursiveCheckpointAdjoint(), True),
]


def routes(name, model, image, *, probes, tolerance, check_tolerance, repeats, rows=ROUTES, step=1e-2):
    """Part 1 for one network: prints a Markdown table of the routes.

    Times are at `tolerance`; the agreement with central differences (in 3
    random unit directions) is at `check_tolerance`, where the forward pass's
    own error no longer swamps the differences.
    """
    sde, key, objective = SubVPSDE(), jax.random.key(0), cross_entropy(0)
    reverse_model = score.for_reverse_mode(model)

    def loss(x, rtol, adjoint=diffrax.RecursiveCheckpointAdjoint(), reverse=False):
        return objective(image_log_likelihoods(
            reverse_model if reverse else model, sde, x, key=key, adjoint=adjoint,
            num_classes=model.config.num_classes, rtol=rtol, atol=rtol,
            divergence=Hutchinson(probes, mode="reverse" if reverse else "forward"),
        )[0])

    forward = jax.jit(loss, static_argnums=1)
    _, forward_seconds = timed(forward, image, tolerance, repeats=repeats)
    directions = [d / jnp.linalg.norm(d) for d in jax.random.normal(jax.random.key(1), (3, *image.shape))]
    central = [float(forward(image + step * d, check_tolerance) - forward(image - step * d, check_tolerance))
               / (2 * step) for d in directions]
    print(f"\n## {name}: 1 image x {model.config.num_classes} labels, {probes} probe(s), "
          f"rtol = atol = {tolerance:g}\n")
    print(f"forward classification: {forward_seconds:.3f} s; central differences at rtol = atol = "
          f"{check_tolerance:g}: {', '.join(f'{c:.4f}' for c in central)}\n")
    print("| route | gradient (s) | gradient / forward | max abs. error vs central differences "
          f"(rtol {check_tolerance:g}) | max rel. error |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for route, adjoint, reverse in rows:
        gradient_fn = jax.jit(jax.grad(lambda x, rtol, adjoint=adjoint, reverse=reverse: loss(
            x, rtol, adjoint, reverse)), static_argnums=1)
        _, seconds = timed(gradient_fn, image, tolerance, repeats=repeats)
        checked = gradient_fn(image, check_tolerance)
        errors = [abs(float(jnp.vdot(checked, d)) - c) for d, c in zip(directions, central)]
        print(f"| {route} | {seconds:.3f} | {seconds / forward_seconds:.2f} | {max(errors):.2e} "
              f"| {max(e / abs(c) for e, c in zip(errors, central)):.2e} |", flush=True)


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
    parser.add_argument("--check-tolerance", type=float, default=1e-5,
                        help="rtol = atol of the finite-difference check")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="8,28", help="which networks: 8 (digits), 28 (28x28)")
    args = parser.parse_args(argv)
    if args.run:
        _, digits = load_run(args.run)
    else:
        digits = score.ScoreNet(score.PRESETS["digits"], key=jax.random.key(0))
    image8 = jax.random.uniform(jax.random.key(5), (1, 8, 8))
    net28 = score.ScoreNet(score.PRESETS["fashion-mnist"], key=jax.random.key(0))
    # A small random output layer instead of the initial zeros, so that the network
    # shapes the likelihood and its gradient.
    output_kernel = 0.02 * jax.random.normal(jax.random.key(7), net28.output_conv.kernel.shape)
    net28 = eqx.tree_at(lambda net: net.output_conv.kernel, net28, output_kernel)
    image28 = jax.random.uniform(jax.random.key(6), (1, 28, 28))
    common = dict(probes=args.probes, tolerance=args.tolerance, check_tolerance=args.check_tolerance,
                  repeats=args.repeats)
    sizes = args.sizes.split(",")
    if "8" in sizes:
        routes(f"digits ({args.run or 'random init'})", digits, image8, **common)
        hvp_orders(digits, image8, probes=args.probes, iterations=10)
    if "28" not in sizes:
        return
    # A 28x28 classification takes about a minute here and reverse over the forward-mode
    # network ten times that: only the reverse-mode route, timed once.
    routes("fashion-mnist 28x28 (random init)", net28, image28, rows=ROUTES[1:],
           **{**common, "repeats": 1, "check_tolerance": args.tolerance})
    hvp_orders(net28, image28, probes=args.probes, iterations=1)


if __name__ == "__main__":
    main()
