"""What lowers the ELBO estimator's variance: stratified times, the control variate, shared pairs.

    python -m benchmarks.elbo_variance --run runs/digits

On --images test images of a run (dequantised with their table keys), draws
--replicates independent sets of --pairs (t, z) pairs and reports, per
variant, the variance of the N-pair mean times N (the variance of one pair's
worth, comparable across N), averaged over the images. Variants: times i.i.d.
or stratified (`likelihood.draw_times`), with or without the control variate
||z||^2 - D (docs/method.md §4.11), and, for the code's choice (stratified,
control variate), the difference between the true label's and the next
label's estimates from the same pairs. Writes elbo_variance.json and .md.
"""

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import estimates
from experiments.data import load_dataset
from experiments.files import write_json, write_text
from experiments.runs import load_run
from likelihood import channels_first, dequantize, draw_pairs, elbo_offset, noised, pair_estimate
from sde import SubVPSDE


def pair_estimates(network, sde, x, label, key, pairs, t0, stratified, control_variate):
    """The `pairs` estimates of one image and label; without the control variate, each
    estimate is shifted by its (mean-zero) (Z / 2) (||z||^2 - D)."""
    times, noises = draw_pairs(sde, key, pairs, x.shape, t0, stratified)
    offset = elbo_offset(sde, x, t0)
    half_z = 0.5 * sde.importance_cdf(sde.T, t0)

    def one(t, z):
        value = pair_estimate(sde, offset, z, network(noised(sde, x, t, z), t, label), t0)
        return value if control_variate else value - half_z * (jnp.sum(z**2) - z.size)

    return jax.vmap(one)(times, noises)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.elbo_variance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/digits"))
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    run, sde, t0 = load_run(args.run), SubVPSDE(), 1e-5
    test = load_dataset(run.config.preset, "test")
    indices = np.arange(args.images)
    noise_keys, pair_keys = jax.vmap(jax.random.split, out_axes=1)(estimates.image_keys(jax.random.key(0), indices))
    xs = jax.vmap(dequantize)(noise_keys, channels_first(jnp.asarray(test.images[indices])))
    labels = jnp.asarray(test.labels[indices])
    others = (labels + 1) % run.model.config.num_classes

    @partial(jax.jit, static_argnums=(1, 2))
    def means(label_of, stratified, control_variate):
        """[images, replicates] means of `pairs` estimates."""
        def image(x, label, key):
            keys = jax.random.split(key, args.replicates)
            return jax.vmap(lambda k: jnp.mean(pair_estimates(run.model, sde, x, label, k, args.pairs, t0,
                                                              stratified, control_variate)))(keys)
        return jax.vmap(image)(xs, label_of, pair_keys)

    def per_pair_variance(values):
        return float(np.mean(np.var(np.asarray(values), axis=1, ddof=1)) * args.pairs)

    rows = {}
    for stratified in (False, True):
        for control_variate in (False, True):
            name = f"{'stratified' if stratified else 'iid'} times, {'with' if control_variate else 'without'} control variate"
            rows[name] = per_pair_variance(means(labels, stratified, control_variate))
            print(f"{name}: {rows[name]:.4g}", flush=True)
    true_means = means(labels, True, True)
    rows["stratified, control variate: true label minus next label, shared pairs"] = per_pair_variance(
        true_means - means(others, True, True))
    result = {"run": str(args.run), "images": args.images, "pairs": args.pairs, "replicates": args.replicates,
              "variance_per_pair": rows}
    out = args.out or args.run / "benchmark_elbo_variance"
    write_json(out / "elbo_variance.json", result)
    command = " ".join(["python -m benchmarks.elbo_variance", *(sys.argv[1:] if argv is None else argv)])
    lines = [f"`{command}`: {args.images} test images, "
             f"{args.replicates} replicates of {args.pairs} pairs each; variance of the mean times "
             f"{args.pairs} (nats^2), averaged over the images.", "",
             "| estimator | variance per pair | relative to i.i.d. without control variate |", "| --- | ---: | ---: |"]
    base = next(iter(rows.values()))
    lines += [f"| {name} | {value:.4g} | {value / base:.3f} |" for name, value in rows.items()]
    write_text(out / "elbo_variance.md", "\n".join(lines) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
