"""Cost of n Hutchinson probes in each layout of `likelihood.divergence.PROBE_LOOPS`.

    python -m benchmarks.probes --run runs/digits                       # about 2 minutes on 2 cores
    python -m benchmarks.probes --preset fashion-mnist --probes 1,4,8,30

For a preset's `ScoreNet` (the trained EMA model of --run, or a randomly
initialised one without it, whose zero output layer makes it a different
workload: say which) on --images images x 10 labels, inside a `fori_loop` (as
in a solve): milliseconds per evaluation of the network alone and, for each
probe count and layout, milliseconds per evaluation of the value and the n
v . (J v) products, and the seconds to trace, lower and compile that loop.
"unrolled" is n `jax.jvp` calls (XLA merges their identical primal passes,
but the program holds n copies of the tangent pass); "vmapped" is one
`jax.linearize` with the n tangents vmapped (one copy, n times the batch);
"scanned" maps the linearised function over the probes one at a time (one
copy, the batch of one). `batch_divergence`'s "auto" follows what this
measured (benchmarks/README.md).
"""

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import score
from experiments.runs import load_run
from likelihood.divergence import PROBE_LOOPS, Hutchinson, batch_divergence

ITERATIONS = 10
LAYOUTS = tuple(loop for loop in PROBE_LOOPS if loop != "auto")


def timed_loop(body, x) -> tuple[float, float]:
    """(seconds to trace, lower and compile, milliseconds per iteration) of `body` in a fori_loop."""
    loop = jax.jit(lambda x0: jax.lax.fori_loop(0, ITERATIONS, lambda i, x_: body(x_), x0))
    began = time.perf_counter()
    compiled = loop.lower(x).compile()
    compile_seconds = time.perf_counter() - began
    jax.block_until_ready(compiled(x))
    began = time.perf_counter()
    jax.block_until_ready(compiled(x))
    return compile_seconds, 1000 * (time.perf_counter() - began) / ITERATIONS


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a run folder (default: a random network of --preset)")
    parser.add_argument("--preset", default="digits", choices=sorted(score.PRESETS))
    parser.add_argument("--probes", default="1,2,4,8,30", help="comma-separated probe counts")
    parser.add_argument("--images", type=int, default=20, help="images per evaluation (x 10 labels)")
    args = parser.parse_args(argv)
    if args.run:
        run = load_run(args.run)
        net, preset = run.model, run.config.preset
    else:
        net, preset = score.ScoreNet(score.PRESETS[args.preset], key=jax.random.key(0)), args.preset
    config = score.PRESETS[preset]
    batch = 10 * args.images
    shape = (config.channels, config.image_size, config.image_size)
    xs = jax.random.normal(jax.random.key(1), (batch, *shape))
    labels = jnp.arange(batch) % 10
    fn = lambda x: jax.vmap(lambda x_, y: net(x_, jnp.float32(0.5), y))(x, labels)
    _, forward = timed_loop(lambda x: x + 1e-3 * fn(x), xs)
    print(f"{preset} ScoreNet ({args.run or 'random initialisation'}), {batch} inputs per evaluation, inside a "
          f"fori_loop; jax {jax.__version__} on {jax.default_backend()}")
    print(f"forward only: {forward:.1f} ms\n")
    print("| probes | " + " | ".join(f"{loop} (ms)" for loop in LAYOUTS) + " | "
          + " | ".join(f"{loop} compile (s)" for loop in LAYOUTS) + " |")
    print("| ---: " * (1 + 2 * len(LAYOUTS)) + "|")
    for n in map(int, args.probes.split(",")):
        probes = Hutchinson(n).draw_probes(jax.random.key(2), (batch, *shape)).swapaxes(0, 1)
        results = []
        for loop in LAYOUTS:
            estimator = Hutchinson(n, probe_loop=loop)

            def body(x):
                values, channels = batch_divergence(fn, x, probes, estimator)
                return x + 1e-3 * values + 1e-6 * channels.sum(axis=1)[:, None, None, None]

            results.append(timed_loop(body, xs))
        print(f"| {n} | " + " | ".join(f"{ms:.1f}" for _, ms in results) + " | "
              + " | ".join(f"{s:.1f}" for s, _ in results) + " |", flush=True)


if __name__ == "__main__":
    main()
