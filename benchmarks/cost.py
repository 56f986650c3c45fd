"""Cost per image of exact-likelihood classification, lever by lever (issue 25).

    python -m benchmarks.cost --run runs/digits              # about 20 minutes on 2 cores
    python -m benchmarks.cost --run RUN_28x28 --data DIR     # hours: the reference dominates

On the same seeded test images (--images, 200) it classifies with today's
default (the preset's settings) and with each lever, alone and combined:
fewer probes, other Runge-Kutta pairs (Tsit5, and Heun of order 2) and a looser
tolerance. Per row: accuracy, predictions that differ from the default's,
solver function evaluations, network passes and seconds per image (the median
over chunks, compiling left out; all rows in one process, so their ratios are
what carries over between machines), and, on the first --reference-images
(50), the mean |delta log p| against a tight reference (rtol = atol = 1e-5,
16 probes in one solve) and the accuracy there beside the reference's. Every
estimate is cached in RUN/estimates (shared with figure3 and
benchmarks.classify): a rerun computes only what is new.
"""

import argparse
import dataclasses
from pathlib import Path

import jax
import numpy as np

from experiments.data import load_dataset
from experiments.estimates import EstimateOptions, classifier_of, estimate_images, resolve, seconds_per_image
from experiments.files import write_json, write_text
from experiments.results import evaluation_order
from experiments.runs import load_run

REFERENCE = {"probes": 16, "rtol": 1e-5, "atol": 1e-5}


def levers(default: EstimateOptions) -> list[tuple[str, EstimateOptions]]:
    """(name, options) of every measured setting, today's default first."""
    change = lambda **fields: dataclasses.replace(default, **fields)
    loose = {"rtol": 1e-2, "atol": 1e-2}
    return [
        (f"default: {default.probes} probes, {default.solver}, rtol {default.rtol:g}", default),
        *[(f"probes {n}", change(probes=n)) for n in (1, 2) if n != default.probes],
        *[(f"solver {s}", change(solver=s)) for s in ("tsit5", "heun") if s != default.solver],
        ("rtol = atol 1e-2", change(**loose)),
        ("heun, rtol 1e-2", change(solver="heun", **loose)),
        *[(f"{n} probe(s), rtol 1e-2", change(probes=n, **loose)) for n in (1, 2)],
        *[(f"{n} probe(s), heun, rtol 1e-2", change(probes=n, solver="heun", **loose)) for n in (1, 2)],
    ]


def estimate(run, test, indices, options: EstimateOptions, *, seed: int, cache: Path, desc: str) -> dict:
    result = estimate_images(classifier_of(run, options), test, indices, key=jax.random.key(seed),
                             images_per_solve=options.images_per_solve, cache=cache, desc=desc)
    return {**result, "seconds_per_image": seconds_per_image(result["seconds"], result["compiling"])}


def row(name: str, result: dict, default: dict, reference: dict, labels: np.ndarray) -> dict:
    near = len(reference["prediction"])  # the first images, where the reference was solved
    return {
        "name": name,
        "accuracy": float(np.mean(result["prediction"] == labels)),
        "predictions_differing_from_default": int(np.sum(result["prediction"] != default["prediction"])),
        "nfe_per_image": float(np.mean(result["nfe"])),
        "passes_per_image": float(np.mean(result["passes"])),
        "seconds_per_image": float(result["seconds_per_image"]),
        "seconds_vs_default": float(result["seconds_per_image"] / default["seconds_per_image"]),
        "mean_abs_delta_log_p_vs_reference": float(np.mean(np.abs(result["scores"][:near] - reference["scores"]))),
        "accuracy_on_reference_images": float(np.mean(result["prediction"][:near] == labels[:near])),
    }


def markdown(rows: list[dict], reference: dict, images: int) -> str:
    lines = ["| setting | accuracy (%) | ≠ default | NFE / image | passes / image | s / image | s vs default "
             "| mean abs Δ log p vs reference (nats) | accuracy on the reference's images (%) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['name']} | {100 * r['accuracy']:.1f} | {r['predictions_differing_from_default']} "
                     f"| {r['nfe_per_image']:,.0f} | {r['passes_per_image']:,.0f} | {r['seconds_per_image']:.3g} "
                     f"| {r['seconds_vs_default']:.3f} | {r['mean_abs_delta_log_p_vs_reference']:.3f} "
                     f"| {100 * r['accuracy_on_reference_images']:.1f} |")
    lines.append(f"\n{images} seeded test images; the reference ({REFERENCE['probes']} probes, rtol = atol = "
                 f"{REFERENCE['rtol']:g}) on the first {reference['images']}: accuracy "
                 f"{100 * reference['accuracy']:.1f} %, {reference['seconds_per_image']:.3g} s per image, "
                 f"{reference['nfe_per_image']:,.0f} NFE. A network pass is one forward pass or JVP on one "
                 "(image, label) input; the seconds are medians over chunks, compiling left out, all rows in "
                 "one process.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="training run folder")
    parser.add_argument("--data", help="data source of the test split (default: the preset's)")
    parser.add_argument("--images", type=int, default=200, help="seeded test images")
    parser.add_argument("--reference-images", type=int, default=50, help="the first images, for the reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="results folder (default RUN/benchmark_cost)")
    args = parser.parse_args(argv)
    run = load_run(args.run)
    test = load_dataset(run.config.preset, "test", source=args.data)
    indices = evaluation_order(len(test.labels), args.images, args.seed)
    labels, cache = test.labels[indices], args.run / "estimates"
    default_options = resolve(EstimateOptions(), run.config.preset)

    results = {}
    for name, options in levers(default_options):
        results[name] = estimate(run, test, indices, options, seed=args.seed, cache=cache, desc=name)
        print(f"{name}: accuracy {100 * np.mean(results[name]['prediction'] == labels):.1f} %, "
              f"{results[name]['seconds_per_image']:.3g} s per image", flush=True)
    near = indices[:args.reference_images]
    solved = estimate(run, test, near, dataclasses.replace(default_options, **REFERENCE), seed=args.seed,
                      cache=cache, desc="reference")
    reference = {"scores": solved["scores"], "prediction": solved["prediction"], "images": len(near),
                 "accuracy": float(np.mean(solved["prediction"] == labels[:len(near)])),
                 "seconds_per_image": float(solved["seconds_per_image"]),
                 "nfe_per_image": float(np.mean(solved["nfe"]))}
    default = results[levers(default_options)[0][0]]
    rows = [row(name, results[name], default, reference, labels) for name, _ in levers(default_options)]
    text = markdown(rows, reference, len(indices))
    print(text)
    out = args.out or args.run / "benchmark_cost"
    write_text(out / "cost.md", text)
    write_json(out / "cost.json", {"run": str(args.run), "images": len(indices), "rows": rows,
                                   "reference": {k: v for k, v in reference.items() if k not in ("scores", "prediction")}})
    return rows


if __name__ == "__main__":
    main()
