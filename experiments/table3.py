"""Table 3: accuracy of the likelihood classifier under PGD attacks.

    python -m experiments.table3 --run runs/digits

For each test image: the clean prediction, then untargeted PGD (Madry et al.)
in an L-inf ball (--linf-epsilon, 8/255) and an L2 ball (--l2-epsilon, 0.5) on
pixels in [0, 1], each in two modes of the estimator's randomness: fixed (the
same dequantisation noise and probes at every step and at evaluation) and EOT
(each step averages --eot-draws fresh draws; the adversarial image is then
judged on one fresh draw, the same for every EOT attack on that image). An
image counts as robust only if it is classified correctly both clean and
after the attack. Gradients go through the ODE by --route (see
`attacks.gradient`), for --images-per-batch images at once, split over the
devices. Per-image results go to `images.jsonl` a batch at a time, and a
rerun continues from the last whole batch; `table3.json` and `table3.md`
(beside the paper's published rows) hold the summary, `examples.png` clean /
adversarial / perturbation triples.
"""

import dataclasses
import time
from pathlib import Path
from typing import Literal

import jax
import numpy as np

from attacks import MODES, PGD, attack_batch, attack_name, modes_of
from classify import Classifier
from experiments import estimates, pictures
from experiments.backend import BackendOptions
from experiments.cli import option, parse_config
from experiments.data import load_dataset
from experiments.estimates import EstimateOptions, seconds_per_image
from experiments.files import write_npz
from experiments.parallel import data_parallel, split_or_replicated
from experiments.results import data_option, chunked, claim, defaults_of, evaluation_order, run_chunks, settings_of, write_summary
from experiments.runs import load_run

NORMS = ("linf", "l2")
# docs/method.md §5, Table 3 of the paper (CIFAR-10, N = 216): clean, L-inf 8/255, L2 0.5.
PUBLISHED_ROWS = [
    ("SBGC (Zimmermann et al. 2021)", "95.04", "0.00", "0.00"),
    ("WideResNet-70-16 + augmentation (baseline in the paper)", "92.23", "82.32", "66.56"),
]
# The paper attacks 216 CIFAR-10 images; on a CPU, digits attacks cost seconds per step.
PRESET_LIMIT = {"digits": 20, "mnist": 5, "fashion-mnist": 5, "cifar10": 216, "cifar10-deep": 216}


@dataclasses.dataclass(frozen=True)
class Table3Config(BackendOptions):
    run: Path = option("training run folder (experiments.train --out)", Path("runs/digits"))
    out: Path | None = option("results folder (default: RUN/table3)")
    limit: int | None = option("attack a seeded random subset of this many test images")
    linf_epsilon: float = option("radius of the L-inf ball, pixels in [0, 1]", 8 / 255)
    l2_epsilon: float = option("radius of the L2 ball, pixels in [0, 1]", 0.5)
    steps: int = option("PGD steps", 10)
    step_factor: float = option("step size = factor x epsilon / steps (Madry et al.: 2.5)", 2.5)
    random_start: bool = option("start from a uniform point of the ball", True)
    eot_draws: int = option("fresh noise draws averaged per EOT step", 4)
    route: Literal["solver", "adjoint"] = option("how gradients go through the ODE", "solver")
    probes: int | None = option("Rademacher probes per solve (default: table1's)")
    rtol: float | None = option("relative tolerance of every solve (default: table1's)", above=0)
    atol: float | None = option("absolute tolerance of every solve (default: table1's)", above=0)
    estimator: Literal["exact", "elbo"] = option("the judged classifier: exact likelihood or ELBO", "exact")
    attack_with: Literal["classifier", "elbo"] = option(
        "whose input gradients PGD follows: the judged classifier's own, or the ELBO classifier's "
        "(a transfer attack when the judge is exact: its robust accuracy is an upper bound)", "classifier")
    elbo_samples: int = option("(t, z) pairs of the judging ELBO (--estimator elbo); fixed per image", 100,
                               at_least=1)
    attack_elbo_samples: int | None = option(
        "(t, z) pairs of the ELBO whose gradients PGD follows (--attack-with elbo, or an ELBO judge); fixed "
        "per image, fresh per EOT draw (default: --elbo-samples)", at_least=1)
    images_per_batch: int = option(
        "images attacked together, in one compiled gradient split over the devices", 10)
    examples: int = option("clean / adversarial / perturbation triples in examples.png", 4)
    seed: int = option("seed of the subset, the noise, the probes and the random starts", 0)
    data: str | None = data_option()


def attacks_of(config: Table3Config) -> tuple[PGD, ...]:
    """The table's PGD attacks, one per norm (L-inf, then L2)."""
    return tuple(PGD(norm, eps, config.step_factor * eps / max(config.steps, 1), config.steps, config.random_start)
                 for norm, eps in zip(NORMS, (config.linf_epsilon, config.l2_epsilon)))


def _norm(delta: np.ndarray, norm: str) -> float:
    return float(np.max(np.abs(delta)) if norm == "linf" else np.sqrt(np.sum(delta**2)))


def attack_records(classifiers: tuple[Classifier, Classifier | None], pixels: np.ndarray, labels: np.ndarray, keys,
                   indices: np.ndarray, attacks: tuple[PGD, ...], config: Table3Config,
                   compiling: bool) -> tuple[list[dict], dict]:
    """The records of a batch of attacked images (intensities `pixels`, c h w) and their
    adversarial images by name, from `attacks.attack_batch`. `classifiers`: the judged
    classifier, and the one whose gradients PGD follows (None: the judge's own)."""
    began = time.perf_counter()
    classifier, gradient_classifier = classifiers
    result = jax.block_until_ready(attack_batch(
        classifier, pixels, labels, keys, attacks, eot_draws=config.eot_draws, route=config.route,
        gradient_classifier=gradient_classifier))
    seconds = (time.perf_counter() - began) / len(indices)  # the batch's time, shared out
    # One transfer to the host, not one per image and attack in the loop below.
    result, pixels, labels = jax.device_get((result, pixels, labels))
    clean_scores, clean_nfe = result.pop("clean")
    lines = []
    for i, index in enumerate(indices):
        line = {"index": int(index), "label": int(labels[i]), "kind": classifier.kind,
                "clean": {"prediction": int(np.argmax(clean_scores[i])), "scores": clean_scores[i].tolist(),
                          "cost": {"nfe": int(clean_nfe[i])}},
                "attacks": {}, "seconds": seconds, "compiling": compiling}
        for attack in attacks:
            for mode in modes_of(classifier):
                attacked = result[attack_name(attack, mode)]
                line["attacks"][attack_name(attack, mode)] = {
                    "prediction": int(np.argmax(attacked["scores"][i])),
                    "scores": attacked["scores"][i].tolist(),
                    "perturbation_norm": _norm(attacked["images"][i] - pixels[i], attack.norm),
                    "cost": {"nfe": int(attacked["nfe"][i]), "gradients": int(attacked["gradients"][i])},
                }
        lines.append(line)
    return lines, {name: attacked["images"] for name, attacked in result.items()}


def evaluate(config: Table3Config) -> dict:
    if config.images_per_batch < 1:
        raise ValueError(f"--images-per-batch must be at least 1, got {config.images_per_batch}")
    run = load_run(config.run)
    preset = run.config.preset
    # The judge scores every label (`image_scores`, as the gradients need): no shortlist.
    options = estimates.resolve(EstimateOptions(probes=config.probes, rtol=config.rtol, atol=config.atol,
                                                shortlist=0, estimator=config.estimator,
                                                elbo_samples=config.elbo_samples), preset)
    classifier = estimates.classifier_of(run, options)
    attack_pairs = config.attack_elbo_samples or config.elbo_samples
    gradient_classifier = None
    if config.attack_with == "elbo" or (config.estimator == "elbo" and attack_pairs != config.elbo_samples):
        gradient_classifier = estimates.classifier_of(
            run, dataclasses.replace(options, estimator="elbo", elbo_samples=attack_pairs))
        if gradient_classifier.kind != "elbo":
            raise ValueError(f"--attack-with elbo needs a score run; {config.run} is a discriminative run")
    limit = config.limit if config.limit is not None else PRESET_LIMIT[preset]
    attacks = attacks_of(config)
    out = config.out or config.run / "table3"
    saved_settings = {**settings_of(config), "limit": limit, "probes": options.probes,
                      "rtol": options.rtol, "atol": options.atol}
    results_path = claim(out, saved_settings, run, defaults_of(Table3Config))
    test = load_dataset(preset, "test", source=config.data)
    order = evaluation_order(len(test.labels), limit, config.seed)
    examples_path = out / "examples.npz"
    examples = dict(np.load(examples_path)) if examples_path.exists() else {}
    key = jax.random.key(config.seed)
    shardings = data_parallel(config.images_per_batch)
    classifiers = tuple(c and estimates.replicated(c, shardings[0]) for c in (classifier, gradient_classifier))

    def attack_chunk(indices, compiling: bool) -> list[dict]:
        pixels = np.moveaxis(test.images[indices].astype(np.float32) / 255, -1, 1)  # intensities, c h w
        labels = test.labels[indices].astype(np.int32)
        batch = jax.device_put((pixels, labels, estimates.image_keys(key, indices)),
                               split_or_replicated(len(indices), *shardings))
        lines, adversarial = attack_records(classifiers, *batch, indices, attacks, config, compiling)
        shown = [i for i, index in enumerate(indices) if index in order[:config.examples]]
        for i in shown:  # the first images are the examples
            examples[f"{indices[i]}_clean"] = pixels[i]
            examples.update({f"{indices[i]}_{name}": images[i] for name, images in adversarial.items()})
        if shown:
            write_npz(examples_path, examples)
        return lines

    records = run_chunks(results_path, chunked(order, config.images_per_batch), attack_chunk, desc="table3")
    summary = summarize(records, estimates.model_name(classifier), preset, saved_settings)
    write_summary(out, "table3", summary, markdown_table(summary))
    pictures.table3_examples(out, records, examples)
    return summary


def summarize(records: list[dict], model: str, preset: str, settings: dict) -> dict:
    """The fields of table3.json from the records. A deterministic classifier's records have
    one mode, "fixed" (its EOT attack would be the same): its EOT fields repeat it."""
    deterministic = records[0]["kind"] == "logits"
    modes = ("fixed",) if deterministic else MODES
    cost = "gradients" if deterministic else "nfe"
    summary = {
        "model": model, "kind": records[0]["kind"], "preset": preset, "num_images": len(records),
        "settings": settings, "deterministic": deterministic,
        "clean_accuracy": float(np.mean([r["clean"]["prediction"] == r["label"] for r in records])),
        "seconds_per_image": seconds_per_image([r["seconds"] for r in records],
                                               [r["compiling"] for r in records]),
    }
    for norm, epsilon in zip(NORMS, (settings["linf_epsilon"], settings["l2_epsilon"])):
        attacked = lambda r, mode: r["attacks"][f"{norm}_{mode}"]
        # Foolbox's convention: an image misclassified clean is adversarial already, so it
        # counts as robust only if it is right both clean and attacked.
        robust = {mode: float(np.mean([r["clean"]["prediction"] == r["label"] == attacked(r, mode)["prediction"]
                                       for r in records])) for mode in modes}
        summary[norm] = {
            "epsilon": epsilon,
            **{f"robust_accuracy_{mode}": robust.get(mode, robust["fixed"]) for mode in MODES},
            "mean_perturbation_norm": float(np.mean(
                [attacked(r, mode)["perturbation_norm"] for r in records for mode in modes])),
            # The time covers all attacks on an image (both norms, every mode), timed together.
            "seconds_per_image": summary["seconds_per_image"],
            f"{cost}_per_image": float(np.mean(
                [sum(attacked(r, mode)["cost"][cost] for mode in modes) for r in records])),
        }
    return summary


def markdown_table(summary: dict) -> str:
    s = summary["settings"]
    percent = lambda x: f"{100 * x:.2f}"
    rows = [f"| {name} (published) | CIFAR-10 | 216 | {clean} | {linf} | {l2} |"
            for name, clean, linf, l2 in PUBLISHED_ROWS]
    data = f"| {summary['preset']} test split | {summary['num_images']} | {percent(summary['clean_accuracy'])}"
    robust = lambda mode: (f"| {percent(summary['linf'][f'robust_accuracy_{mode}'])} "
                           f"| {percent(summary['l2'][f'robust_accuracy_{mode}'])} |")
    if summary["deterministic"]:
        rows.append(f"| {summary['model']}, this run (preset {summary['preset']}; {s['steps']} PGD "
                    "steps on the cross-entropy of its logits; deterministic, so fixed and EOT are "
                    f"the same attack) {data} {robust('fixed')}")
        cost = (f"gradients of the network per image: L-inf {summary['linf']['gradients_per_image']:.0f}, "
                f"L2 {summary['l2']['gradients_per_image']:.0f}.")
    else:
        elbo = lambda pairs: f"ELBO of {pairs} (t, z) pairs"
        judge = elbo(s["elbo_samples"]) if s["estimator"] == "elbo" else f"{s['probes']} probe(s), rtol {s['rtol']}"
        attack_pairs = s.get("attack_elbo_samples") or s["elbo_samples"]
        gradients = (f"gradients of the {elbo(attack_pairs)} (a transfer attack: an upper bound)"
                     if s["attack_with"] == "elbo" else f"route {s['route']}" if s["estimator"] == "exact"
                     else f"gradients of its {elbo(attack_pairs)}")
        for mode in MODES:
            rows.append(
                f"| {summary['model']}, this run, {mode} noise (preset {summary['preset']}; "
                f"{s['steps']} PGD steps, judged by {judge}, {gradients}"
                f"{', ' + str(s['eot_draws']) + ' draws per step' if mode == 'eot' else ''}) "
                f"{data} {robust(mode)}")
        cost = (f"forward function evaluations of the gradient steps: L-inf "
                f"{summary['linf']['nfe_per_image']:.0f}, L2 {summary['l2']['nfe_per_image']:.0f} "
                "(each also has a backward pass).")
    return "\n".join([
        f"| model | data | images | clean (%) | PGD L-inf {s['linf_epsilon']:.4f} (%) "
        f"| PGD L2 {s['l2_epsilon']} (%) |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "An image counts as robust if it is classified correctly both clean and attacked. "
        f"Mean perturbation norm: L-inf {summary['linf']['mean_perturbation_norm']:.4f}, "
        f"L2 {summary['l2']['mean_perturbation_norm']:.4f}. Per attacked image (all attacks "
        f"together): {summary['seconds_per_image']:.3g} s; {cost}",
        "",
    ])


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(
        Table3Config, argv, prog="python -m experiments.table3",
        description=__doc__.split("\n\n")[0],
        preset_defaults={p: {"limit": n} for p, n in PRESET_LIMIT.items()},
    )
    summary = evaluate(config)
    print(markdown_table(summary))
    return summary


if __name__ == "__main__":
    main()
