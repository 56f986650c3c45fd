"""Figure 3: accuracy and log-likelihood against the number of estimator draws.

    python -m experiments.figure3 --run runs/digits

Each draw is one solve with its own dequantisation noise and one Rademacher
probe (docs/method.md §4.2); n draws average their log p(x | y). For every n in
--counts, random subsets of n of the --draws draws (--subsamples of them)
give the mean and spread of: accuracy, and the mean log-likelihood under the
true label and under the best wrong label. Once with the noise shared across
the labels of an image and once drawn afresh per label, on the same images.
Writes `figure3.png` and `figure3.json` (with the seconds per image and
draw) to --out. The draws are cached in RUN/estimates (shared with
benchmarks/classify.py), so a rerun or an interrupted run does not solve
them again.
"""

import dataclasses
from pathlib import Path

import jax
import numpy as np

from experiments.cli import option, parse_config
from experiments.data import load_dataset
from experiments import estimates
from experiments.estimates import PRESET_EVALUATION, EstimateOptions, estimate_images, seconds_per_image
from experiments.files import write_json
from experiments.plotting import drawing, save_png
from experiments.results import data_option, evaluation_order, settings_of
from experiments.runs import load_run


@dataclasses.dataclass(frozen=True)
class Figure3Config:
    run: Path = option("training run folder (experiments.train --out)", Path("runs/digits"))
    out: Path | None = option("results folder (default: RUN/figure3)")
    images: int = option("test images, a seeded random subset", 100)
    draws: int = option("independent draws per image and label", 30)
    counts: str = option("comma-separated numbers of draws n to average", "1,2,5,10,20,30")
    subsamples: int = option("random subsets of n draws behind each error bar", 50)
    rtol: float | None = option("relative tolerance of each solve")
    atol: float | None = option("absolute tolerance of each solve")
    images_per_solve: int = option("images whose labels share one ODE solve", 10)
    seed: int = option("seed of the images, the draws and the subsets", 0)
    data: str | None = data_option()


def draw_statistics(
    log_probs: np.ndarray, labels: np.ndarray, counts: list[int], subsamples: int, seed: int
) -> dict[str, dict[str, list[float]]]:
    """Mean and std over random subsets of n draws, for each n in `counts`.

    `log_probs` is [draws, images, K]. Per subset: accuracy of the averaged
    log p, and its mean over images under the true label and the best wrong one.
    """
    rng = np.random.default_rng(seed)
    num_draws, num_images, _ = log_probs.shape
    rows = np.arange(num_images)
    stats = {name: {"mean": [], "std": []} for name in ("accuracy", "true_label", "best_wrong_label")}
    for n in counts:
        values = {name: [] for name in stats}
        for _ in range(subsamples if n < num_draws else 1):  # all draws: one subset only
            averaged = log_probs[rng.choice(num_draws, n, replace=False)].mean(axis=0)
            wrong = averaged.copy()
            wrong[rows, labels] = -np.inf
            values["accuracy"].append(np.mean(np.argmax(averaged, axis=1) == labels))
            values["true_label"].append(np.mean(averaged[rows, labels]))
            values["best_wrong_label"].append(np.mean(wrong.max(axis=1)))
        for name, samples in values.items():
            stats[name]["mean"].append(float(np.mean(samples)))
            stats[name]["std"].append(float(np.std(samples)))
    return stats


@drawing
def plot(plt, path: Path, counts: list[int], curves: dict[str, dict], title: str) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for noise, stats in curves.items():
        errorbar = lambda axis, name, **style: axis.errorbar(
            counts, stats[name]["mean"], yerr=stats[name]["std"], capsize=3, marker="o", **style)
        errorbar(left, "accuracy", label=f"{noise} noise")
        errorbar(right, "true_label", label=f"true label, {noise} noise")
        errorbar(right, "best_wrong_label", linestyle="--", label=f"best wrong label, {noise} noise")
    left.set(xscale="log", xlabel="draws n", ylabel="accuracy", title="accuracy")
    right.set(xscale="log", xlabel="draws n", ylabel="mean log p(x | y) (nats)",
              title="log-likelihood")
    for axis in (left, right):
        axis.set_xticks(counts, [str(n) for n in counts])
        axis.set_xticks([], minor=True)  # under a decade, matplotlib labels minor ticks "3x10^0"
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    save_png(path, figure, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(
        Figure3Config, argv, prog="python -m experiments.figure3",
        description=__doc__.split("\n\n")[0],
        preset_defaults={p: {k: d[k] for k in ("rtol", "atol")} for p, d in PRESET_EVALUATION.items()},
    )
    counts = sorted({int(n) for n in config.counts.split(",")})
    if not counts or counts[0] < 1 or counts[-1] > config.draws:
        raise ValueError(f"--counts must lie in [1, --draws = {config.draws}], got {config.counts}")
    run = load_run(config.run)
    train_config = run.config
    # Each draw is one probe on every label (no shortlist); the tolerances are the preset's unless given.
    options = EstimateOptions(probes=1, rtol=config.rtol, atol=config.atol, shortlist=0)
    rtol, atol = (getattr(estimates.resolve(options, train_config.preset), name) for name in ("rtol", "atol"))
    classifiers = {
        noise: estimates.require_likelihood(
            estimates.classifier_of(run, dataclasses.replace(options, share_noise=shared)), run, "figure3")
        for noise, shared in (("shared", True), ("separate", False))}
    out = config.out or config.run / "figure3"
    test = load_dataset(train_config.preset, "test", source=config.data)
    indices = evaluation_order(len(test.labels), config.images, config.seed, flag="--images")
    labels = test.labels[indices]

    curves, solved = {}, []
    for noise, classifier in classifiers.items():
        draws = [
            estimate_images(classifier, test, indices,
                            key=jax.random.fold_in(jax.random.key(config.seed), d),
                            images_per_solve=config.images_per_solve,
                            cache=config.run / "estimates",
                            desc=f"{noise} noise, draw {d + 1}/{config.draws}")
            for d in range(config.draws)
        ]
        solved += draws
        log_probs = np.stack([draw["scores"] for draw in draws])
        curves[noise] = draw_statistics(log_probs, labels, counts, config.subsamples, config.seed)

    # Cached draws keep the seconds measured when they were solved.
    seconds = seconds_per_image(np.concatenate([d["seconds"] for d in solved]),
                                np.concatenate([d["compiling"] for d in solved]))
    result = {"counts": counts, "curves": curves, "num_images": len(indices), "preset": train_config.preset,
              "seconds_per_image_and_draw": seconds,
              "settings": {**settings_of(config), "rtol": rtol, "atol": atol},
              "model": run.fingerprint()}
    write_json(out / "figure3.json", result)
    plot(out / "figure3.png", counts, curves,
         f"{train_config.preset}: {len(indices)} test images, 1 probe per draw, rtol {rtol:g}")
    for noise, stats in curves.items():
        accuracies = ", ".join(f"n={n}: {100 * a:.1f}%" for n, a in zip(counts, stats["accuracy"]["mean"]))
        print(f"{noise} noise: {accuracies}")
    print(f"{seconds:.3g} s per image and draw (median, compiling left out)")
    print(f"wrote {out / 'figure3.png'} and {out / 'figure3.json'}")
    return result


if __name__ == "__main__":
    main()
