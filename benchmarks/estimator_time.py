"""Seconds per image of the exact and the ELBO classifiers, side by side in one process.

    python -m benchmarks.estimator_time --run runs/digits --samples 10,30,100,300

Each classifier scores the same --images test images (one chunk, compiled
first); the timed rounds alternate between the classifiers, so that a
slower or busier stretch of the machine falls on all of them alike. Prints
and writes (--out) the median seconds per image of each and its ratio to the
exact classifier's, with network passes per image.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import estimates
from experiments.data import load_dataset
from experiments.files import write_json, write_text
from experiments.runs import load_run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.estimator_time", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/digits"))
    parser.add_argument("--samples", default="10,30,100,300")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    run = load_run(args.run)
    test = load_dataset(run.config.preset, "test")
    indices = np.arange(args.images)
    pixels, keys = jnp.asarray(test.images[indices]), estimates.image_keys(jax.random.key(0), indices)
    classifiers = {"exact": estimates.classifier_of(run)}
    for n in (int(n) for n in args.samples.split(",") if n):
        classifiers[f"elbo_{n}"] = estimates.classifier_of(run, estimates.EstimateOptions(estimator="elbo",
                                                                                          elbo_samples=n))
    passes = {name: float(jnp.mean(jax.block_until_ready(c.scores(pixels, keys)).passes))
              for name, c in classifiers.items()}  # compiles each
    times = {name: [] for name in classifiers}
    for _ in range(args.rounds):
        for name, classifier in classifiers.items():
            began = time.perf_counter()
            jax.block_until_ready(classifier.scores(pixels, keys))
            times[name].append((time.perf_counter() - began) / args.images)
    seconds = {name: float(np.median(t)) for name, t in times.items()}
    command = " ".join(["python -m benchmarks.estimator_time", *(sys.argv[1:] if argv is None else argv)])
    lines = [f"`{command}`: {args.images} test images in one chunk, median of {args.rounds} alternating rounds.",
             "", "| classifier | network passes / image | seconds / image | relative to exact |",
             "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {passes[name]:,.0f} | {seconds[name]:.4f} | {seconds[name] / seconds['exact']:.3f} |"
              for name in classifiers]
    print("\n".join(lines))
    out = args.out or args.run / "benchmark_estimator_time"
    write_json(out / "estimator_time.json", {"command": command, "passes_per_image": passes,
                                              "seconds_per_image": seconds, "times": times})
    write_text(out / "estimator_time.md", "\n".join(lines) + "\n")
    return seconds


if __name__ == "__main__":
    main()
