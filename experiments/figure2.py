"""Figure 2: log-likelihood along linear interpolations between test images.

    python -m experiments.figure2 --run runs/digits

Fetaya et al. found conditional flows give interpolations between two test
images a higher likelihood than either end (a concave curve); the paper
finds SBGC's convex: interpolations are less likely than data. For seeded
random pairs (A, B) of distinct test images and t on --points values in
[0, 1] (t = 1/2 added if missing), x(t) = t k_A + (1 - t) k_B interpolates
the integer pixels as reals, and every point of a pair is dequantised with
the SAME noise u: y(t) = 2 (x(t) + u) / 256 - 1, so y(1) and y(0) are the
usual dequantised A and B and the curve's shape comes from the images, not
from fresh noise at each point (the probes are shared along a pair too).

Per point: the marginal log p(x) (docs/method.md §4.6: logsumexp over labels minus
log K) and log p(x | y_A), log p(x | y_B), in bits/dim. The shape of
f(t) = log p(x(t)): the fraction of pairs whose f lies below its chord at
every interior point (convex), and the mean of f(1/2) - (f(0) + f(1)) / 2
with its standard error (negative: the midpoint is less likely than the
ends on average). Per-pair results go to `images.jsonl` (resumable);
`figure2.png` and `figure2.json` hold the curves and the numbers.
"""

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from classify import marginal_log_likelihood
from experiments import estimates, pictures
from experiments.cli import option, parse_config
from experiments.data import load_dataset
from experiments.estimates import EstimateOptions
from experiments.files import write_json
from experiments.parallel import data_parallel, split_or_replicated
from experiments.results import RunOptions, chunked, claim, defaults_of, run_chunks, settings_of
from experiments.runs import load_run
from likelihood import bits_per_dim, channels_first, to_model_space

# About 20 minutes on 2 CPU cores for digits (25 points x 10 labels a pair); the paper's 500.
PRESET_PAIRS = {"digits": 100, "mnist": 10, "fashion-mnist": 10, "cifar10": 500, "cifar10-deep": 500}


@dataclasses.dataclass(frozen=True)
class Figure2Config(EstimateOptions, RunOptions):
    pairs: int | None = option("random pairs of test images")
    points: int = option("values of t in [0, 1] (t = 1/2 is added if missing)", 24)


def interpolation_times(points: int) -> np.ndarray:
    """`points` equally spaced t in [0, 1], and t = 1/2 if that is not among them."""
    if points < 3:
        raise ValueError(f"--points must be at least 3 (both ends and one inside), got {points}")
    return np.union1d(np.linspace(0, 1, points), [0.5])


def interpolate(
    image_a: np.ndarray, image_b: np.ndarray, times: Float[np.ndarray, " p"]
) -> np.ndarray:
    """t x_A + (1 - t) x_B for every t, the uint8 images as reals (0..255), same shape."""
    a, b = np.asarray(image_a, np.float64), np.asarray(image_b, np.float64)
    return np.stack([t * a + (1 - t) * b for t in times])


def random_pairs(num_images: int, pairs: int, seed: int) -> np.ndarray:
    """`pairs` seeded random pairs of distinct test indices, [pairs, 2]."""
    if pairs < 1:
        raise ValueError(f"--pairs must be at least 1, got {pairs}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(num_images, 2, replace=False) for _ in range(pairs)])


def shape_statistics(curves: Float[np.ndarray, "pairs p"], times: np.ndarray) -> dict:
    """Convexity of f(t) per pair: below the chord at every interior t, and the midpoint gap."""
    curves = np.asarray(curves, np.float64)
    ends_a, ends_b = curves[:, -1:], curves[:, :1]  # f(1) at x_A, f(0) at x_B
    chord = times * ends_a + (1 - times) * ends_b
    interior = (times > 0) & (times < 1)
    midpoint = curves[:, np.flatnonzero(np.isclose(times, 0.5))[0]]
    gaps = midpoint - (ends_a[:, 0] + ends_b[:, 0]) / 2
    return {
        "fraction_convex": float(np.mean(np.all(curves[:, interior] < chord[:, interior], axis=1))),
        "midpoint_gap_mean": float(np.mean(gaps)),
        "midpoint_gap_standard_error": float(np.std(gaps, ddof=1) / np.sqrt(len(gaps)))
        if len(gaps) > 1 else None,
    }


def evaluate(config: Figure2Config) -> dict:
    run = load_run(config.run)
    preset = run.config.preset
    if config.shortlist:
        raise ValueError("--shortlist does not apply: the marginal log p(x) needs every label")
    # Every label solved exactly, whatever the preset's shortlist.
    config = estimates.resolve(dataclasses.replace(config, shortlist=0), preset)
    classifier = estimates.require_likelihood(estimates.classifier_of(run, config), run, "figure2")
    if config.pairs is None:
        config = dataclasses.replace(config, pairs=PRESET_PAIRS[preset])
    test = load_dataset(preset, "test", source=config.data)
    times = interpolation_times(config.points)
    pairs = random_pairs(len(test.labels), config.pairs, config.seed)
    out = config.out or config.run / "figure2"
    settings = settings_of(config)
    results_path = claim(out, settings, run, defaults_of(Figure2Config))
    num_dims = math.prod(test.images.shape[1:])

    key = jax.random.key(config.seed)
    pairs_per_solve = max(1, config.images_per_solve // len(times))
    shardings = data_parallel(pairs_per_solve * len(times))
    classifier = estimates.replicated(classifier, shardings[0])

    def interpolate_chunk(chunk: list[int], compiling: bool) -> list[dict]:
        pair_keys = [jax.random.fold_in(key, number) for number in chunk]
        points = []
        for number, pair_key in zip(chunk, pair_keys):
            a, b = pairs[number]
            noise = jax.random.uniform(jax.random.split(pair_key)[0], test.images.shape[1:])
            points.append(to_model_space(interpolate(test.images[a], test.images[b], times), noise))
        x = channels_first(jnp.concatenate(points))
        keys = jnp.stack([k for k in pair_keys for _ in times])  # probes shared along a pair
        x, keys = jax.device_put((x, keys), split_or_replicated(len(x), *shardings))
        began = time.perf_counter()
        log_probs = jax.block_until_ready(classifier.model_scores(x, keys).scores)
        seconds = (time.perf_counter() - began) / len(chunk)
        log_probs = np.asarray(log_probs).reshape(len(chunk), len(times), -1)
        return [{"pair": int(number), "a": int(pairs[number][0]), "b": int(pairs[number][1]),
                 "label_a": int(test.labels[pairs[number][0]]),
                 "label_b": int(test.labels[pairs[number][1]]),
                 "log_probs": lp.tolist(), "seconds": seconds, "compiling": compiling}
                for number, lp in zip(chunk, log_probs)]

    records = run_chunks(results_path, chunked(list(range(config.pairs)), pairs_per_solve),
                         interpolate_chunk, desc="figure2", identify=lambda r: r["pair"])
    log_probs = np.asarray([r["log_probs"] for r in records])  # pairs, points, labels
    marginal = np.asarray(marginal_log_likelihood(jnp.asarray(log_probs)))
    bits = lambda log_p: np.asarray(bits_per_dim(log_p, num_dims))
    under = lambda end: np.take_along_axis(  # log p(x(t) | y_end) for every pair and t
        log_probs, np.asarray([r[f"label_{end}"] for r in records])[:, None, None], axis=2)[..., 0]
    curves = {"marginal": bits(marginal), "label_a": bits(under("a")), "label_b": bits(under("b"))}
    result = {
        "preset": preset, "num_pairs": len(records), "times": times.tolist(),
        "shape": shape_statistics(marginal, times),
        "curves": {name: {"mean": c.mean(axis=0).tolist(), "std": c.std(axis=0).tolist()}
                   for name, c in curves.items()},
        "settings": settings,
    }
    write_json(out / "figure2.json", result)
    pictures.figure2(out / "figure2.png", result)
    return result


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(
        Figure2Config, argv, prog="python -m experiments.figure2",
        description=__doc__.split("\n\n")[0],
        preset_defaults={p: {**d, "pairs": PRESET_PAIRS[p]} for p, d in estimates.PRESET_EVALUATION.items()},
    )
    result = evaluate(config)
    shape = result["shape"]
    print(f"{result['num_pairs']} pairs: {100 * shape['fraction_convex']:.1f} % convex; "
          f"f(1/2) - (f(0) + f(1)) / 2 = {shape['midpoint_gap_mean']:.3f} nats "
          f"(standard error {shape['midpoint_gap_standard_error']})")
    return result


if __name__ == "__main__":
    main()
