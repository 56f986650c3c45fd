"""The score network's GroupNorm as it is against the formula it replaced (issue 25, lever 3).

    python -m benchmarks.group_norm [--preset fashion-mnist] [--images 10 20] [--out DIR]

`score.layers.GroupNorm` reduces over the pixels with the channel axis in
place and folds normalisation and affine map into one multiply-add per
element. Before, it split the channel axis into (groups, channels per group),
reduced over all but the groups, normalised the grouped map and applied the
affine map after it. This times the forward pass and the forward with one JVP
probe (`benchmarks.profile`'s passes, inside a `fori_loop`) with each, in
alternating rounds in one process, and prints the best time of each and their
ratio. The third variant has no GroupNorm at all: the floor that any
GroupNorm formula stays above.
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp

import score
from benchmarks.network import perturbed
from benchmarks.profile import passes, placed, seconds_per_iteration
from experiments.files import write_json, write_text
from score import layers

ROUNDS = 2


def grouped_group_norm(self: layers.GroupNorm, x):
    """The formula before issue 25: normalise the (groups, channels per group) map, then the affine map."""
    axis = self.layout.channel_axis
    channels = x.shape[axis]
    grouped = x.reshape(x.shape[:axis] + (self.groups, channels // self.groups) + x.shape[axis + 1:])
    reduce_axes = tuple(i for i in range(grouped.ndim) if i != axis)
    mean = jnp.mean(grouped, axis=reduce_axes, keepdims=True)
    variance = jnp.mean(jnp.square(grouped - mean), axis=reduce_axes, keepdims=True)
    normalised = ((grouped - mean) * jax.lax.rsqrt(variance + 1e-6)).reshape(x.shape)
    return normalised * self.layout.per_channel(self.weight) + self.layout.per_channel(self.bias)


VARIANTS = {"per-channel multiply-add (score.layers)": layers.GroupNorm.__call__,
            "grouped, before issue 25": grouped_group_norm,
            "none (the floor)": lambda self, x: x}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.group_norm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fashion-mnist", help="network preset (random weights)")
    parser.add_argument("--images", type=int, nargs="+", default=[20], help="images per chunk (x labels inputs)")
    parser.add_argument("--iterations", type=int, default=5, help="passes per timed loop")
    parser.add_argument("--out", type=Path, help="folder for group_norm.md and group_norm.json")
    args = parser.parse_args(argv)
    key = jax.random.key(0)
    net = perturbed(score.ScoreNet(score.PRESETS[args.preset], key=key), key)
    best = {}
    try:
        for _ in range(ROUNDS):
            for variant, call in VARIANTS.items():
                layers.GroupNorm.__call__ = call  # traced afresh by each jit below
                for images in args.images:
                    batch = images * net.config.num_classes
                    functions, shape = passes(net, batch, key)
                    x = placed([shape], batch, key)
                    for name, function in functions.items():
                        seconds = seconds_per_iteration(function, x, args.iterations)
                        cell = (variant, images, name)
                        best[cell] = min(best.get(cell, seconds), seconds)
                        print(f"{variant}, {images} images, {name}: {1e3 * seconds:.1f} ms", flush=True)
    finally:
        layers.GroupNorm.__call__ = VARIANTS["per-channel multiply-add (score.layers)"]
    rows = [{"variant": v, "images": i, "pass": p, "seconds": s,
             "ratio_to_grouped": s / best[("grouped, before issue 25", i, p)]} for (v, i, p), s in best.items()]
    lines = [f"{args.preset} (random weights), {jax.local_device_count()} host device(s), best of {ROUNDS} rounds; "
             f"jax {jax.__version__}", "", "| GroupNorm | images per chunk | pass | ms | against the grouped formula |",
             "| --- | ---: | --- | ---: | ---: |"]
    lines += [f"| {r['variant']} | {r['images']} | {r['pass']} | {1e3 * r['seconds']:.1f} | {r['ratio_to_grouped']:.3f} |"
              for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text(args.out / "group_norm.md", text)
        write_json(args.out / "group_norm.json", rows)
    return rows


if __name__ == "__main__":
    main()
