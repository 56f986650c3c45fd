"""Cost of n Hutchinson probes: separate `jax.jvp` calls against one `jax.linearize`.

    python -m benchmarks.probes --run runs/digits   # from the repository root; about a minute on 2 cores

For the digits `ScoreNet` (the trained EMA model of --run, or a randomly
initialised one without it, whose zero output layer makes it a different
workload: say which) on 20 images x 10 labels, inside a `fori_loop` (as
in a solve): milliseconds per evaluation of the network alone, of n unrolled
JVPs (XLA merges their identical primal passes) and of one linearisation with
the n tangents vmapped. `likelihood.divergence.batch_divergence` unrolls.
"""

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import score
from experiments.runs import load_run
from likelihood.divergence import Hutchinson

BATCH = 200  # 20 images x 10 labels
ITERATIONS = 20


def milliseconds_per_iteration(body, x) -> float:
    run = jax.jit(lambda x0: jax.lax.fori_loop(0, ITERATIONS, lambda i, x_: body(x_), x0))
    jax.block_until_ready(run(x))
    start = time.perf_counter()
    jax.block_until_ready(run(x))
    return 1000 * (time.perf_counter() - start) / ITERATIONS


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a digits run folder (default: a random network)")
    args = parser.parse_args(argv)
    net = load_run(args.run).model if args.run else score.ScoreNet(score.PRESETS["digits"], key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (BATCH, 1, 8, 8))
    labels = jnp.arange(BATCH) % 10
    fn = lambda x: jax.vmap(lambda x_, y: net(x_, jnp.float32(0.5), y))(x, labels)
    forward = milliseconds_per_iteration(lambda x: x + 1e-3 * fn(x), xs)
    print(f"digits ScoreNet ({args.run or 'random initialisation'}), {BATCH} inputs per evaluation, "
          "inside a fori_loop")
    print(f"forward only: {forward:.1f} ms\n")
    print("| probes | unrolled jax.jvp (ms) | linearize + vmap (ms) | unrolled / linearize |")
    print("| ---: | ---: | ---: | ---: |")
    for n in (1, 2, 4, 8):
        probes = Hutchinson(n).draw_probes(jax.random.key(2), (BATCH, 1, 8, 8)).swapaxes(0, 1)

        def unrolled(x):
            tangents = [jax.jvp(fn, (x,), (probes[:, i],)) for i in range(n)]
            return x + 1e-3 * sum(value + tangent for value, tangent in tangents)

        def linearized(x):
            value, jvp_fn = jax.linearize(fn, x)
            tangents = jax.vmap(jvp_fn, in_axes=1, out_axes=1)(probes)
            return x + 1e-3 * (value + tangents.sum(axis=1))

        a = milliseconds_per_iteration(unrolled, xs)
        b = milliseconds_per_iteration(linearized, xs)
        print(f"| {n} | {a:.1f} | {b:.1f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
