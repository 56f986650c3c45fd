"""Table 2: accuracy and bits/dim under common corruptions (CIFAR-10-C and its kin).

    python -m experiments.table2 --run runs/digits

The same seeded subset of test images (--limit per corruption and severity;
the paper used a random 10 % of CIFAR-10-C) is classified clean and under
every corruption of `experiments.corruptions` at every severity, computed
from the test split (or read from the official CIFAR-10-C folder with
--corrupted-data), with table1's estimator and its preset defaults. An image
has the same dequantisation noise and probes clean and corrupted, so the
differences between severities are not estimator noise. Per-image results go
to `images.jsonl` as they come and a rerun continues from them;
`table2.json` and `table2.md` (beside the paper's rows) hold the summary:
the mean accuracy over the corruptions and without the noise corruptions,
each naming how many corruptions it averages (frost is left out: it needs
the authors' photographs). `corruptions.png` shows one test image through
every corruption and severity.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np

from experiments import estimates
from experiments.cli import option, parse_config
from experiments.corrupted import check_cifar10_c, corrupted_images
from experiments.corruptions import CORRUPTIONS, EXTRAS, LEFT_OUT, NOISES
from experiments.data import Split, load_dataset
from experiments.estimates import EstimateOptions, accuracy_and_bits
from experiments.plotting import drawing, save_png
from experiments.results import (EvaluationConfig, chunked, claim, defaults_of, evaluation_order, run_chunks,
                                 running_accuracy, settings_of, write_summary)
from experiments.runs import load_run

CLEAN = "clean"
SEVERITIES = (1, 2, 3, 4, 5)
# docs/method.md §5 and the paper's Table 2: clean, CIFAR-10-C mean over the 15 corruptions,
# and the mean without the three noises.
PUBLISHED_ROWS = [
    ("SBGC (Zimmermann et al. 2021)", "95.04", "76.24", "75.71"),
    ("WideResNet-28-12 (baseline in the paper)", "95.42", "74.42", "80.21"),
]
# Images per corruption and severity: about 30 minutes on 2 CPU cores for digits
# (71 passes over the subset at table1's 2.25 images/s); the paper's 10 % for CIFAR-10.
PRESET_LIMIT = {"digits": 50, "mnist": 20, "fashion-mnist": 20, "cifar10": 1000, "cifar10-deep": 1000}


@dataclasses.dataclass(frozen=True)
class Table2Config(EstimateOptions, EvaluationConfig):
    corruptions: str = option("comma-separated corruptions (extras: " + ", ".join(EXTRAS) + ")",
                              ",".join(CORRUPTIONS))
    corrupted_data: Path | None = option(
        "a CIFAR-10-C folder (labels.npy, <corruption>.npy) to read instead of computing the "
        "corruptions from the test split")


def jobs(names: tuple[str, ...], order: np.ndarray, images_per_solve: int) -> list[list[tuple]]:
    """Chunks of (corruption, severity, test index): clean first, then every corruption at
    every severity; a chunk never mixes two of them (one solve, one corrupted batch)."""
    groups = [(CLEAN, 0)] + [(name, s) for name in names for s in SEVERITIES]
    return [[(name, severity, int(j)) for j in chunk]
            for name, severity in groups for chunk in chunked(order, images_per_solve)]


def evaluate(config: Table2Config) -> dict:
    """Classify the subset clean and under every corruption, resuming from `images.jsonl`."""
    run = load_run(config.run)
    preset = run.config.preset
    config = estimates.resolve(config, preset)
    if config.limit is None:
        config = dataclasses.replace(config, limit=PRESET_LIMIT[preset])
    names = tuple(name for name in config.corruptions.split(",") if name)
    for name in names:
        if name not in CORRUPTIONS + EXTRAS:
            why = f" (left out: it {LEFT_OUT[name]})" if name in LEFT_OUT else ""
            raise ValueError(f"--corruptions: unknown {name!r}{why}; known: "
                             + ", ".join(CORRUPTIONS + EXTRAS))
    out = config.out or config.run / "table2"
    settings = settings_of(config)
    test = load_dataset(preset, "test", source=config.data)
    if config.corrupted_data is not None:
        check_cifar10_c(config.corrupted_data, names, test)
    order = evaluation_order(len(test.labels), config.limit, config.seed)
    results_path = claim(out, settings, run, defaults_of(Table2Config))
    draw_contact_sheet(out / "corruptions.png", test, int(order[0]), names, config)

    classifier = estimates.classifier_of(run, config)
    classify = estimates.chunk_classifier(classifier, config.images_per_solve, config.seed)

    def classify_corrupted(chunk: list[tuple], compiling: bool) -> list[dict]:
        name, severity = chunk[0][:2]
        indices = np.asarray([j for _, _, j in chunk])
        images = corrupted_images(test, indices, name, severity, seed=config.seed,
                                  folder=config.corrupted_data)
        lines = classify(images, test.labels[indices], indices, compiling)
        return [{"corruption": name, "severity": severity, **line} for line in lines]

    records = run_chunks(results_path, jobs(names, order, config.images_per_solve),
                         classify_corrupted, desc="table2", postfix=running_accuracy,
                         identify=lambda r: (r["corruption"], r["severity"], r["index"]))
    summary = summarize_records(records, estimates.model_name(classifier), preset,
                                math.prod(test.images.shape[1:]), settings)
    write_summary(out, "table2", summary, markdown_table(summary))
    return summary


def _bits(records: list[dict], num_dims: int) -> dict:
    summary = accuracy_and_bits(records, num_dims)
    return {"accuracy": summary["accuracy"], "bits_per_dim": summary["bits_per_dim"]}


def summarize_records(records: list[dict], model: str, preset: str, num_dims: int, settings: dict) -> dict:
    """table2.json's fields: per corruption and severity, and the paper's two means (bits/dim
    None for logits)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        groups.setdefault((r["corruption"], r["severity"]), []).append(r)
    clean = _bits(groups.pop((CLEAN, 0)), num_dims)
    corruptions: dict[str, dict[str, dict]] = {}
    for (name, severity), group in groups.items():
        corruptions.setdefault(name, {})[str(severity)] = _bits(group, num_dims)
    mean = lambda names: float(np.mean([corruptions[n][str(s)]["accuracy"]
                                        for n in names for s in SEVERITIES])) if names else None
    without_noises = [n for n in corruptions if n not in NOISES]
    return {
        "model": model,
        "kind": records[0]["kind"],
        "preset": preset,
        "num_images": len(records) // (1 + len(SEVERITIES) * len(corruptions)),
        "clean_accuracy": clean["accuracy"],
        "clean_bits_per_dim": clean["bits_per_dim"],
        "mean_accuracy": mean(list(corruptions)),
        "num_corruptions": len(corruptions),
        "mean_accuracy_without_noises": mean(without_noises),
        "num_corruptions_without_noises": len(without_noises),
        "mean_accuracy_per_severity": {
            str(s): float(np.mean([c[str(s)]["accuracy"] for c in corruptions.values()]))
            for s in SEVERITIES},
        "left_out": dict(LEFT_OUT),
        "corruptions": corruptions,
        "settings": settings,
    }


def markdown_table(summary: dict) -> str:
    s, percent = summary["settings"], lambda x: f"{100 * x:.2f}"
    n, m = summary["num_corruptions"], summary["num_corruptions_without_noises"]
    rows = [f"| {name} (published) | CIFAR-10-C | 15 | {clean} | {mean} | {without} |"
            for name, clean, mean, without in PUBLISHED_ROWS]
    discriminative = summary["kind"] == "logits"
    estimator = "argmax of the logits" if discriminative else f"{s['probes']} probe(s), rtol {s['rtol']}"
    bits = lambda value: "" if discriminative else f" ({value:.2f})"
    rows.append(
        f"| {summary['model']}, this run (preset {summary['preset']}; {estimator}; "
        f"{'CIFAR-10-C files' if s['corrupted_data'] else 'corruptions computed from the test split'}) "
        f"| {summary['preset']}, {summary['num_images']} images per corruption and severity | {n} "
        f"| {percent(summary['clean_accuracy'])} | {percent(summary['mean_accuracy'])} "
        f"| {percent(summary['mean_accuracy_without_noises'])} ({m} corruptions) |")
    per_corruption = [
        f"| {name} | " + " | ".join(
            f"{percent(c[str(sev)]['accuracy'])}{bits(c[str(sev)]['bits_per_dim'])}"
            for sev in SEVERITIES) + " |"
        for name, c in summary["corruptions"].items()]
    return "\n".join([
        "| model | data | corruptions | clean (%) | mean (%) | mean without noises (%) |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Left out: {', '.join(f'{k} ({v})' for k, v in summary['left_out'].items())}."
        + ("" if discriminative else
           f" Clean bits/dim on the same images: {summary['clean_bits_per_dim']:.3f}."),
        "",
        "Accuracy in %" + ("" if discriminative else " (bits/dim under the true label)")
        + " per corruption and severity:",
        "",
        "| corruption | " + " | ".join(f"severity {sev}" for sev in SEVERITIES) + " |",
        "| --- |" + " --- |" * len(SEVERITIES),
        *per_corruption,
        "| mean | " + " | ".join(percent(summary["mean_accuracy_per_severity"][str(sev)])
                                for sev in SEVERITIES) + " |",
        "",
    ])


@drawing
def draw_contact_sheet(plt, path: Path, test: Split, index: int, names: tuple[str, ...],
                       config: Table2Config) -> None:
    """Test image `index` through every corruption (rows) and severity (columns)."""
    figure, axes = plt.subplots(len(names), 1 + len(SEVERITIES), squeeze=False,
                                figsize=(1.3 * (1 + len(SEVERITIES)), 1.3 * len(names)))
    grey = test.images.shape[-1] == 1
    for row, name in enumerate(names):
        for severity in (0, *SEVERITIES):
            image = corrupted_images(test, np.asarray([index]), name, severity, seed=config.seed,
                                     folder=config.corrupted_data)[0]
            axis = axes[row, severity]
            axis.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None,
                        vmin=0, vmax=255, interpolation="nearest")
            axis.set_xticks([]), axis.set_yticks([])
            if row == 0:
                axis.set_title(CLEAN if severity == 0 else f"severity {severity}", fontsize=8)
        axes[row, 0].set_ylabel(name.replace("_", " "), fontsize=7)
    figure.tight_layout()
    save_png(path, figure)


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(
        Table2Config, argv, prog="python -m experiments.table2",
        description=__doc__.split("\n\n")[0],
        preset_defaults={p: {**d, "limit": PRESET_LIMIT[p]} for p, d in estimates.PRESET_EVALUATION.items()},
    )
    summary = evaluate(config)
    print(markdown_table(summary))
    return summary


if __name__ == "__main__":
    main()
