"""Table 1: classify the test split by likelihood, and its bits/dim.

    python -m experiments.table1 --run runs/digits

Loads the EMA model of a training run, computes log p(x | y) for every test
image and label from the probability-flow ODE (docs/method.md §4; uniform
dequantisation, shared noise across labels), and reports accuracy of
argmax_y, bits/dim under the true label and marginal over labels, function
evaluations and speed. Per-image results go to `images.jsonl` as they are
computed; a rerun with the same settings continues from them. `table1.json`
and `table1.md` (beside the paper's published rows) hold the summary.
"""

import dataclasses
import math

import numpy as np

from classify import LOG_DENSITY_KINDS
from experiments import estimates
from experiments.cli import parse_config
from experiments.data import load_dataset
from experiments.estimates import accuracy_and_bits, seconds_per_image
from experiments.results import claim, defaults_of, evaluation_order, settings_of, write_summary
from experiments.runs import load_run

# docs/method.md §5, Table 1 of the paper (CIFAR-10 test set, 10,000 images).
PUBLISHED_ROWS = [
    ("SBGC (Zimmermann et al. 2021)", "CIFAR-10", "10,000", "95.04", "3.11"),
    ("SBGC, deep variant (Zimmermann et al. 2021)", "CIFAR-10", "10,000", "", "3.08"),
    ("WideResNet-28-12 (baseline in the paper)", "CIFAR-10", "10,000", "95.42", ""),
]


@dataclasses.dataclass(frozen=True)
class Table1Config(estimates.ClassifyConfig):
    pass


def evaluate(config: Table1Config) -> dict:
    """Classify the chosen test images, resuming from `images.jsonl`; returns the summary."""
    run = load_run(config.run)
    config = estimates.resolve(config, run.config.preset)
    classifier = estimates.classifier_of(run, config)
    out = config.out or config.run / "table1"
    settings = settings_of(config)
    test = load_dataset(run.config.preset, "test", source=config.data)
    order = evaluation_order(len(test.labels), config.limit, config.seed)
    results_path = claim(out, settings, run, defaults_of(Table1Config))

    records = estimates.classify_test_images(classifier, config.images_per_solve, test, order,
                                             results_path, seed=config.seed, desc="table1")
    summary = summarize_records(records, estimates.model_name(classifier), run.config.preset,
                                test.images.shape[1:], settings, classifier.num_classes)
    write_summary(out, "table1", summary, markdown_table(summary))
    return summary


def summarize_records(records: list[dict], model: str, preset: str, image_shape, settings: dict,
                      num_classes: int) -> dict:
    """table1.json's fields from the records of `estimates.classify_chunk` (logits have no
    bits/dim and no cost: those fields are None; an ELBO's bits/dim are its bound's). `confusion[i][j]` counts images of
    label i predicted as j."""
    likelihood = records[0]["kind"] in LOG_DENSITY_KINDS
    mean_cost = lambda name: float(np.mean([r["cost"][name] for r in records])) if likelihood else None
    confusion = np.zeros((num_classes, num_classes), int)
    np.add.at(confusion, ([r["label"] for r in records], [r["prediction"] for r in records]), 1)
    return {
        **accuracy_and_bits(records, math.prod(image_shape)),
        "kind": records[0]["kind"],
        "confusion": confusion.tolist(),
        "num_images": len(records),
        "nfe_per_image": mean_cost("nfe"),
        "evaluations_per_image": mean_cost("passes"),
        "images_per_second": 1 / seconds_per_image([r["seconds"] for r in records],
                                                   [r["compiling"] for r in records]),
        "model": model,
        "preset": preset,
        "settings": settings,
    }


def markdown_table(summary: dict) -> str:
    s = summary["settings"]
    rows = [f"| {name} (published) | {data} | {n} | {acc} | {bpd} |" for name, data, n, acc, bpd
            in PUBLISHED_ROWS]
    data = f"| {summary['preset']} test split | {summary['num_images']:,} | {100 * summary['accuracy']:.2f} |"
    if summary["kind"] == "logits":
        rows.append(f"| {summary['model']}, this run (preset {summary['preset']}; discriminative: "
                    f"argmax of the logits) {data} none (no likelihood) |")
        cost = ""
    elif summary["kind"] == "elbo":
        schedule = s["elbo_rounds"] and f"rounds (pairs:labels) {s['elbo_rounds']}"
        rows.append(
            f"| {summary['model']}, this run (preset {summary['preset']}; ELBO of "
            f"{schedule or str(s['elbo_samples']) + ' (t, z) pairs'} shared by the labels, t0 {s['t0']}) "
            f"{data} {summary['bits_per_dim']:.3f}, an upper bound (marginal "
            f"{summary['bits_per_dim_marginal']:.3f}) |")
        cost = (f"{summary['evaluations_per_image']:.0f} network forward passes (one image and label "
                "each) per image, no solver, ")
    else:
        first_pass = (f"an ELBO first pass of {s['elbo_samples']} pairs" if s.get("first_pass") == "elbo"
                      else f"a first pass of {s['first_pass_steps']} Heun steps" if s.get("first_pass_steps")
                      else f"a first pass at {s['first_pass_tolerance']}")
        shortlist = f", shortlist of {s['shortlist']} after {first_pass}" if s["shortlist"] else ""
        outside = summary.get("true_label_outside_shortlist")
        first_pass_bits = (f"; the true label outside the shortlist on {outside} image(s), whose "
                           "bits are the first pass's, moved by the shortlist's gap" if outside else "")
        rows.append(
            f"| {summary['model']}, this run (preset {summary['preset']}; {s['probes']} probe(s), "
            f"{'shared' if s['share_noise'] else 'separate'} noise, {s['solver']} rtol {s['rtol']} "
            f"atol {s['atol']}, t0 {s['t0']}{shortlist}) {data} "
            f"{summary['bits_per_dim']:.3f} (marginal {summary['bits_per_dim_marginal']:.3f}"
            f"{first_pass_bits}) |")
        cost = (f"{summary['nfe_per_image']:.0f} solver function evaluations and "
                f"{summary['evaluations_per_image']:.0f} network passes (forward or JVP, one image "
                "and label each) per image, ")
    return "\n".join([
        "| model | data | images | accuracy (%) | bits/dim |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"This run: {cost}{summary['images_per_second']:.2f} images/s.",
        "",
        per_label_table(summary["confusion"]),
        "",
    ])


def per_label_table(confusion: list[list[int]]) -> str:
    """Accuracy per true label, and each label's most frequent wrong prediction."""
    rows = []
    for label, row in enumerate(confusion):
        row = np.asarray(row)
        if not row.sum():
            continue
        wrong = row.copy()
        wrong[label] = 0
        mistake = f"{wrong.argmax()} ({wrong.max()})" if wrong.max() else "none"
        rows.append(f"| {label} | {row[label]} | {row.sum()} | {mistake} |")
    return "\n".join([
        "Per true label (`confusion` in table1.json):",
        "",
        "| true label | right | images | most frequent wrong label (its images) |",
        "| --- | ---: | ---: | --- |",
        *rows,
    ])


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(
        Table1Config, argv, prog="python -m experiments.table1",
        description=__doc__.split("\n\n")[0],
        preset_defaults=estimates.PRESET_EVALUATION,
    )
    summary = evaluate(config)
    print(markdown_table(summary))
    return summary


if __name__ == "__main__":
    main()
