"""Exact likelihood or ELBO? Both classifiers of one run on the same test images.

    python -m experiments.estimators --run runs/digits --out results/digits/estimators

Classifies the chosen test images (resumable, one folder of per-image records
per setting under --out, as table1's) with the exact classifier at the
preset's settings (or reads them from a table1 folder, --exact), the ELBO
with each of --samples pairs, and each adaptive --rounds schedule, with the
same keys (so the same dequantisation noise). Then writes estimators.json,
estimators.md and estimators.png: accuracy, bits/dim (exact, and the bound),
agreement with the exact classifier, the bound minus the exact log p of the
true label, seconds and network passes per image, calibration of p(y | x)
(docs/method.md §4.12) before and after temperature scaling, and what each
ELBO would give as the first pass of a shortlist (replayed from the records).
"""

import dataclasses
import math
from pathlib import Path

import numpy as np

from classify import calibration
from experiments import estimates
from experiments.checkpoint import load_config
from experiments.cli import option, parse_config
from experiments.data import load_dataset
from experiments.files import read_lines
from experiments.plotting import drawing, save_png
from experiments.results import (RESULTS_FILE, EvaluationConfig, claim, defaults_of, evaluation_order, settings_of,
                                 write_summary)
from experiments.runs import Run, load_run


@dataclasses.dataclass(frozen=True)
class EstimatorsConfig(EvaluationConfig):
    samples: str = option("ELBO settings: pairs per image, comma-separated", "10,30,100,300,1000")
    rounds: str = option("adaptive ELBO settings: schedules 'pairs:labels,...' separated by ';' "
                         "(empty: none)", "30:10,100:3")
    grids: str = option("fixed-grid exact classifiers, as first passes for a shortlist (docs/method.md §4.8): "
                        "1 probe on that many Heun steps in t, or in minus the log-SNR with ':log-snr', "
                        "comma-separated, e.g. '4,4:log-snr' (empty: none)", "")
    bins: int = option("bins of the reliability diagram and the calibration error", 10, at_least=2)
    exact: Path | None = option("a table1 folder of the exact classifier on this run and these images to "
                                "read instead of computing it (e.g. a committed one)")
    images_per_solve: int | None = option("images per chunk, for every classifier (default: the preset's)",
                                          at_least=1)


def settings(config: EstimatorsConfig) -> dict[str, estimates.EstimateOptions]:
    """Every classifier of the comparison by its folder name under --out."""
    chunk = config.images_per_solve
    # The exact row scores every label exactly (no shortlist): the others are measured against it.
    chosen = {"exact": estimates.EstimateOptions(images_per_solve=chunk, shortlist=0)}
    for samples in (int(n) for n in config.samples.split(",") if n):
        chosen[f"elbo_{samples}"] = estimates.EstimateOptions(estimator="elbo", elbo_samples=samples,
                                                              images_per_solve=chunk)
    for schedule in (s for s in config.rounds.split(";") if s):
        name = "adaptive_" + schedule.replace(":", "x").replace(",", "_")
        chosen[name] = estimates.EstimateOptions(estimator="elbo", elbo_rounds=schedule, images_per_solve=chunk)
    for grid in (g for g in config.grids.split(",") if g):
        steps, _, variable = grid.partition(":")
        if not steps.isdigit() or int(steps) < 1 or variable not in ("", "log-snr"):
            raise ValueError(f"--grids takes 'steps' or 'steps:log-snr', comma-separated, got {grid!r}")
        name = f"grid_{steps}" + ("_log_snr" if variable else "")
        chosen[name] = estimates.EstimateOptions(probes=1, solver="heun", grid_steps=int(steps),
                                                 time_variable=variable or "t", images_per_solve=chunk)
    return chosen


# Shortlist sizes replayed from the records: what `ShortlistClassifier(first, exact, k)` would
# have predicted with this classifier as its first pass.
SHORTLISTS = (2, 3, 5)


def replayed_shortlists(first: np.ndarray, exact: np.ndarray, labels: np.ndarray) -> dict[str, dict]:
    """For each k of SHORTLISTS: how often the k best labels by `first` hold the exact
    classifier's prediction, and the accuracy of the exact argmax among them. With the same
    keys, a shortlist's exact pass gives the kept labels the scores of the full exact
    computation (docs/method.md §4.8), so this is what the two-stage classifier predicts."""
    replayed = {}
    for k in SHORTLISTS:
        kept = np.argsort(-first, axis=1)[:, :k]
        prediction = np.take_along_axis(kept, np.argmax(np.take_along_axis(exact, kept, 1), 1)[:, None], 1)[:, 0]
        replayed[str(k)] = {"keeps_exact_prediction": float(np.mean(prediction == exact.argmax(1))),
                            "accuracy": float(np.mean(prediction == labels))}
    return replayed


def row(records: list[dict], exact: list[dict], num_dims: int, bins: int) -> dict:
    """One classifier's line of the comparison, beside the exact classifier's records."""
    labels = np.asarray([r["label"] for r in records])
    scores = np.asarray([r["scores"] for r in records])
    true = np.arange(len(labels)), labels
    exact_scores = np.asarray([r["scores"] for r in exact])
    gap = scores[true] - exact_scores[true]
    probs = calibration.probabilities(scores)
    scaled, temperatures = calibration.cross_fitted_probabilities(scores, labels)
    cost = lambda name: float(np.mean([r["cost"][name] for r in records]))
    return {
        **estimates.accuracy_and_bits(records, num_dims),
        "agreement_with_exact": float(np.mean([r["prediction"] == e["prediction"] for r, e in zip(records, exact)])),
        "log_p_minus_exact": {"mean": float(gap.mean()), "standard_error": float(gap.std(ddof=1) / math.sqrt(len(gap)))},
        "as_first_pass": replayed_shortlists(scores, exact_scores, labels),
        "passes_per_image": cost("passes"), "nfe_per_image": cost("nfe"),
        "seconds_per_image": estimates.seconds_per_image([r["seconds"] for r in records],
                                                         [r["compiling"] for r in records]),
        "calibration_error": float(calibration.expected_calibration_error(probs, labels, bins)),
        "calibration_error_scaled": float(calibration.expected_calibration_error(scaled, labels, bins)),
        "temperatures": temperatures,
        "reliability": {k: np.asarray(v).tolist() for k, v in calibration.reliability(probs, labels, bins).items()},
        "reliability_scaled": {k: np.asarray(v).tolist()
                               for k, v in calibration.reliability(scaled, labels, bins).items()},
    }


def given_exact(config: EstimatorsConfig, run: Run) -> list[dict]:
    """The records of the --exact folder, refused unless they are of this run's model and of
    the exact classifier on every label (a shortlist's records hold first-pass scores)."""
    if load_config(config.exact)["model"] != run.fingerprint():
        raise ValueError(f"{config.exact} was computed on another model than {config.run}")
    records = read_lines(config.exact / RESULTS_FILE)
    if not records or records[0]["kind"] != "likelihood":
        raise ValueError(f"{config.exact / RESULTS_FILE} holds no exact classifier's records")
    if "shortlisted" in records[0]:
        raise ValueError(f"{config.exact / RESULTS_FILE} holds a shortlist's records, whose left-out labels "
                         "have first-pass scores: give a table1 folder made with --shortlist 0")
    return records


def evaluate(config: EstimatorsConfig) -> dict:
    out = config.out or config.run / "estimators"
    run = load_run(config.run)
    test = load_dataset(run.config.preset, "test", source=config.data)
    order = evaluation_order(len(test.labels), config.limit, config.seed)
    rows, exact = {}, None
    for name, options in settings(config).items():
        if name == "exact" and config.exact:
            records = given_exact(config, run)
        else:
            options = estimates.resolve(estimates.ClassifyConfig(**{
                **dataclasses.asdict(options), "run": config.run, "limit": config.limit, "seed": config.seed,
                "data": config.data, "precision": config.precision}), run.config.preset)
            path = claim(out / name, settings_of(options), run, defaults_of(estimates.ClassifyConfig))
            records = estimates.classify_test_images(estimates.classifier_of(run, options), options.images_per_solve,
                                                     test, order, path, seed=config.seed, desc=name)
        exact = exact or records
        if [r["index"] for r in records] != [r["index"] for r in exact]:
            raise ValueError(f"{config.exact} holds other test images than --limit {config.limit} --seed "
                             f"{config.seed} choose: give them as its table1 had them")
        rows[name] = row(records, exact, math.prod(test.images.shape[1:]), config.bins)
    result = {"run": str(config.run), "preset": run.config.preset, "num_images": len(exact), "rows": rows,
              "settings": settings_of(config)}
    write_summary(out, "estimators", result, markdown_table(result))
    plot(out / "estimators.png", result)
    return result


def markdown_table(result: dict) -> str:
    lines = [
        f"Run `{result['run']}` (preset {result['preset']}), {result['num_images']} test images, the same "
        "dequantisation noise for every classifier. Bits/dim of an ELBO are its bound's (an upper bound "
        "on the SDE model's); \"bound - exact\" is the mean over images of the true label's score minus "
        "its exact log p, in nats, with its standard error. ECE: expected calibration error of "
        "softmax(scores / T) at T = 1 and at T fitted on the other half of the images.",
        "",
        "| classifier | accuracy (%) | bits/dim | agreement with exact (%) | bound - exact (nats) | "
        "network passes / image | seconds / image | ECE | ECE, scaled (T) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in result["rows"].items():
        gap = ("" if name == "exact" else
               f"{r['log_p_minus_exact']['mean']:+.2f} ± {r['log_p_minus_exact']['standard_error']:.2f}")
        temperatures = ", ".join(f"{t:.3g}" for t in r["temperatures"])
        lines.append(
            f"| {name} | {100 * r['accuracy']:.2f} | {r['bits_per_dim']:.3f} | "
            f"{100 * r['agreement_with_exact']:.1f} | {gap} | {r['passes_per_image']:,.0f} | "
            f"{r['seconds_per_image']:.3f} | {r['calibration_error']:.3f} | "
            f"{r['calibration_error_scaled']:.3f} ({temperatures}) |")
    lines += [
        "",
        "Each as the first pass of a shortlist (`--shortlist k` with `--first-pass elbo` for an ELBO, "
        "`--first-pass-steps N` for a grid in t), replayed from these "
        "records: the exact classifier decides among the k labels it ranks best, with the scores above "
        "(docs/method.md §4.8). \"keeps\": how often the k hold the exact classifier's prediction.",
        "",
        "| first pass | " + " | ".join(f"k = {k}: keeps (%) | k = {k}: accuracy (%)" for k in SHORTLISTS) + " |",
        "| --- |" + " ---: | ---: |" * len(SHORTLISTS),
    ]
    for name, r in result["rows"].items():
        if name != "exact":
            cells = [f"{100 * r['as_first_pass'][str(k)]['keeps_exact_prediction']:.1f} | "
                     f"{100 * r['as_first_pass'][str(k)]['accuracy']:.2f}" for k in SHORTLISTS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@drawing
def plot(plt, path: Path, result: dict) -> None:
    """Accuracy and agreement against network passes; reliability of the exact and the largest
    ELBO classifier, before and after temperature scaling."""
    figure, (cost, diagram) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = result["rows"]
    for name, r in rows.items():
        marker = {"exact": "*", "adaptive": "s", "grid": "^"}.get(name.split("_")[0], "o")
        cost.plot(r["passes_per_image"], 100 * r["accuracy"], marker, markersize=9 if marker == "*" else 6,
                  color={"*": "black", "^": "tab:orange"}.get(marker, "tab:blue"))
        cost.annotate(name, (r["passes_per_image"], 100 * r["accuracy"]), fontsize=7,
                      textcoords="offset points", xytext=(4, -10))
    cost.set_xscale("log")
    cost.set_xlabel("network passes per image")
    cost.set_ylabel("accuracy (%)")
    elbos = [n for n in rows if n.startswith("elbo_")]
    shown = [("exact", "black")] + ([(elbos[-1], "tab:blue")] if elbos else [])
    for name, colour in shown:
        for key, style in (("reliability", "o-"), ("reliability_scaled", "s--")):
            table = rows[name][key]
            used = [i for i, c in enumerate(table["count"]) if c]
            diagram.plot([table["confidence"][i] for i in used], [table["accuracy"][i] for i in used], style,
                         color=colour, label=f"{name}{', T fitted' if key.endswith('scaled') else ''}")
    diagram.plot([0, 1], [0, 1], ":", color="grey")
    diagram.set_xlabel("confidence (top probability)")
    diagram.set_ylabel("accuracy in the bin")
    diagram.legend(fontsize=8)
    figure.suptitle(f"{result['preset']}: {result['num_images']} test images", fontsize=10)
    figure.tight_layout()
    save_png(path, figure)


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(EstimatorsConfig, argv, prog="python -m experiments.estimators",
                          description=__doc__.split("\n\n")[0])
    result = evaluate(config)
    print(markdown_table(result))
    return result


if __name__ == "__main__":
    main()
