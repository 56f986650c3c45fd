"""Cost per image of exact-likelihood classification, lever by lever (issue 25).

    python -m benchmarks.cost --run runs/digits              # about 20 minutes on 2 cores
    python -m benchmarks.cost --run RUN_28x28 --data DIR     # hours: the reference dominates

On the same seeded test images (--images, 200) it classifies with the default
that issue 25 began from (BASELINE: 4 probes, Dopri5, rtol = atol = 1e-3, every
label solved; the row named "default") and with each lever, alone and combined:
fewer probes, other Runge-Kutta pairs (Tsit5, and Heun of order 2), looser
tolerances, error norms that control log p and the log-SNR time variable
(docs/method.md §4.3), and early label elimination (a shortlist after a loose
solve, a few fixed Heun steps or an ELBO, §4.8). Per row: accuracy, predictions that differ
from the default's, solver function evaluations, network passes and seconds
per image (the median over chunks, compiling left out; all rows in one
process, so their ratios are what carries over between machines), and, on
the first --reference-images (50), the mean |delta log p| against a tight
reference (rtol = atol = 1e-5, 16 probes in one solve; a shortlist's mean
includes its first pass's scores of the labels it did not solve) and the
accuracy there beside the reference's. Every estimate is cached in
RUN/estimates (shared with figure3 and benchmarks.classify): a rerun computes
only what is new; --only runs a subset of the levers.

The solver-error curve (`curve.md`, `curve.png`) isolates the solver from the
probes: on the reference images with one probe, each series of CURVE_SERIES
(the three error norms, and the RMS norm in the log-SNR time variable) at
each tolerance of CURVE_TOLERANCES against the same probe at rtol = atol =
1e-5 (RMS norm, time t): NFE against mean |delta log p| and predictions
changed.
"""

import argparse
import dataclasses
from pathlib import Path

import jax
import numpy as np

from experiments.data import load_dataset
from experiments.estimates import EstimateOptions, classifier_of, estimate_images, resolve, seconds_per_image
from experiments.files import write_json, write_text
from experiments.plotting import drawing, save_png
from experiments.results import evaluation_order
from experiments.runs import load_run

REFERENCE = {"probes": 16, "rtol": 1e-5, "atol": 1e-5}
# What every lever is measured against: the CPU presets' settings when issue 25 began (the digits
# preset has since become one of the levers: 2 probes, rtol 1e-2, a shortlist of 2 of 4 Heun steps).
BASELINE = EstimateOptions(probes=4, rtol=1e-3, atol=1e-3, shortlist=0)
CURVE_TOLERANCES = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
# Each series of the solver-error curve: its name and the options it changes.
CURVE_SERIES = {"rms norm": {"error_norm": "rms"}, "log-p norm": {"error_norm": "log-p"},
                "max norm": {"error_norm": "max"},
                "rms norm, log-SNR time": {"error_norm": "rms", "time_variable": "log-snr"}}


def levers(default: EstimateOptions) -> list[tuple[str, EstimateOptions]]:
    """(name, options) of every measured setting, the baseline (`default`) first."""
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
        *[(f"error norm {norm}", change(error_norm=norm)) for norm in ("log-p", "max")],
        ("log-p norm, rtol 1e-2", change(error_norm="log-p", **loose)),
        *[(f"{n} probe(s), log-p norm, rtol 1e-2", change(probes=n, error_norm="log-p", **loose)) for n in (1, 2)],
        *[(f"2 probes, {name}rtol 1e-1", change(probes=2, error_norm=norm, rtol=1e-1, atol=1e-1))
          for name, norm in (("", "rms"), ("log-p norm, ", "log-p"))],
        ("log-SNR time variable", change(time_variable="log-snr")),
        ("log-SNR time variable, rtol 1e-2", change(time_variable="log-snr", **loose)),
        ("shortlist 3 of a 1-probe pass at 1e-2", change(shortlist=3, first_pass_tolerance=1e-2)),
        ("2 probes, rtol 1e-2, shortlist 3 of a pass at 1e-1",
         change(probes=2, shortlist=3, first_pass_tolerance=1e-1, **loose)),
        *[(f"{n} probe(s), rtol 1e-2, shortlist {keep} of a {steps}-step Heun pass",
           change(probes=n, shortlist=keep, first_pass_steps=steps, **loose))
          for n, keep, steps in ((2, 2, 4), (1, 2, 4), (2, 3, 4), (2, 2, 2), (2, 2, 8))],
        *[(f"{n} probe(s), rtol {tolerance}, shortlist {keep} of an ELBO-{pairs} pass",
           change(probes=n, shortlist=keep, first_pass="elbo", elbo_samples=pairs, rtol=float(tolerance),
                  atol=float(tolerance)))
          for n, keep, pairs, tolerance in ((2, 2, 20, "1e-2"), (2, 3, 20, "1e-2"), (1, 3, 20, "1e-2"),
                                            (2, 2, 50, "1e-2"), (2, 3, 50, "1e-2"), (2, 2, 10, "1e-2"),
                                            (2, 2, 20, "1e-1"), (2, 2, 10, "1e-1"))],
    ]


def estimate(run, test, indices, options: EstimateOptions, *, seed: int, cache: Path, desc: str) -> dict:
    result = estimate_images(classifier_of(run, options), test, indices, key=jax.random.key(seed),
                             images_per_solve=options.images_per_solve, cache=cache, desc=desc)
    return {**result, "seconds_per_image": seconds_per_image(result["seconds"], result["compiling"])}


def solver_curve(run, test, indices, default: EstimateOptions, *, seed: int, cache: Path) -> dict:
    """NFE and |delta log p| of every (series, tolerance), one probe, against the same probe's
    tight solve on `indices`."""
    one_probe = dataclasses.replace(default, probes=1)
    tight = estimate(run, test, indices, dataclasses.replace(one_probe, rtol=1e-5, atol=1e-5), seed=seed,
                     cache=cache, desc="curve: tight")
    curves = {}
    for series, fields in CURVE_SERIES.items():
        curves[series] = []
        for tolerance in CURVE_TOLERANCES:
            options = dataclasses.replace(one_probe, **fields, rtol=tolerance, atol=tolerance)
            result = estimate(run, test, indices, options, seed=seed, cache=cache,
                              desc=f"curve: {series} {tolerance:g}")
            curves[series].append({
                "tolerance": tolerance,
                "nfe_per_image": float(np.mean(result["nfe"])),
                "seconds_per_image": float(result["seconds_per_image"]),
                "mean_abs_delta_log_p": float(np.mean(np.abs(result["scores"] - tight["scores"]))),
                "predictions_differing": int(np.sum(result["prediction"] != tight["prediction"])),
            })
    return {"images": len(indices), "tight_nfe_per_image": float(np.mean(tight["nfe"])), "curves": curves}


def curve_markdown(curve: dict) -> str:
    lines = ["| series | rtol = atol | NFE / image | s / image | mean abs Δ log p (nats) | ≠ tight |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for series, points in curve["curves"].items():
        for p in points:
            lines.append(f"| {series} | {p['tolerance']:g} | {p['nfe_per_image']:,.0f} | {p['seconds_per_image']:.3g} "
                         f"| {p['mean_abs_delta_log_p']:.3g} | {p['predictions_differing']} |")
    lines.append(f"\n{curve['images']} seeded test images, 1 probe; each row against the same probe solved at "
                 f"rtol = atol = 1e-5 with the RMS norm ({curve['tight_nfe_per_image']:,.0f} NFE per image), so the "
                 "differences are the solver's alone.")
    return "\n".join(lines)


@drawing
def plot_curve(plt, path: Path, curve: dict, title: str) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    for series, points in curve["curves"].items():
        axis.plot([p["nfe_per_image"] for p in points], [p["mean_abs_delta_log_p"] for p in points],
                  marker="o", label=series)
    axis.set(xscale="log", yscale="log", xlabel="solver function evaluations per image",
             ylabel="mean |Δ log p| against rtol 1e-5 (nats)", title=title)
    axis.legend()
    save_png(path, figure)


def row(name: str, result: dict, default: dict, reference: dict | None, labels: np.ndarray) -> dict:
    """One setting's line; without a reference (--reference-images 0) its two columns are None."""
    near = 0 if reference is None else len(reference["prediction"])  # the images the reference solved
    versus = lambda value: None if reference is None else float(value())
    return {
        "name": name,
        "accuracy": float(np.mean(result["prediction"] == labels)),
        "predictions_differing_from_default": int(np.sum(result["prediction"] != default["prediction"])),
        "nfe_per_image": float(np.mean(result["nfe"])),
        "passes_per_image": float(np.mean(result["passes"])),
        "seconds_per_image": float(result["seconds_per_image"]),
        "seconds_vs_default": float(result["seconds_per_image"] / default["seconds_per_image"]),
        "mean_abs_delta_log_p_vs_reference": versus(lambda: np.mean(np.abs(result["scores"][:near] - reference["scores"]))),
        "accuracy_on_reference_images": versus(lambda: np.mean(result["prediction"][:near] == labels[:near])),
    }


def markdown(rows: list[dict], reference: dict, images: int) -> str:
    lines = ["| setting | accuracy (%) | ≠ default | NFE / image | passes / image | s / image | s vs default "
             "| mean abs Δ log p vs reference (nats) | accuracy on the reference's images (%) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        delta, accuracy = r["mean_abs_delta_log_p_vs_reference"], r["accuracy_on_reference_images"]
        lines.append(f"| {r['name']} | {100 * r['accuracy']:.1f} | {r['predictions_differing_from_default']} "
                     f"| {r['nfe_per_image']:,.0f} | {r['passes_per_image']:,.0f} | {r['seconds_per_image']:.3g} "
                     f"| {r['seconds_vs_default']:.3f} | {'' if delta is None else f'{delta:.3f}'} "
                     f"| {'' if accuracy is None else f'{100 * accuracy:.1f}'} |")
    tight = (f"the reference ({REFERENCE['probes']} probes, rtol = atol = {REFERENCE['rtol']:g}) on the first "
             f"{reference['images']}: accuracy {100 * reference['accuracy']:.1f} %, "
             f"{reference['seconds_per_image']:.3g} s per image, {reference['nfe_per_image']:,.0f} NFE"
             if reference else "no reference (--reference-images 0)")
    lines.append(f"\n{images} seeded test images; {tight}. A network pass is one forward pass or JVP on one "
                 "(image, label) input; the seconds are medians over chunks, compiling left out, all rows in "
                 "one process.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="training run folder")
    parser.add_argument("--data", help="data source of the test split (default: the preset's)")
    parser.add_argument("--images", type=int, default=200, help="seeded test images")
    parser.add_argument("--reference-images", type=int, default=50,
                        help="the first images, for the reference and the curve (0: neither)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="run only the levers whose names contain one of these (the default always)")
    parser.add_argument("--no-curve", action="store_true", help="leave out the solver-error curve")
    parser.add_argument("--out", type=Path, help="results folder (default RUN/benchmark_cost)")
    args = parser.parse_args(argv)
    run = load_run(args.run)
    test = load_dataset(run.config.preset, "test", source=args.data)
    indices = evaluation_order(len(test.labels), args.images, args.seed)
    labels, cache = test.labels[indices], args.run / "estimates"
    default_options = resolve(BASELINE, run.config.preset)
    chosen = [(name, options) for i, (name, options) in enumerate(levers(default_options))
              if i == 0 or not args.only or any(text in name for text in args.only)]

    results = {}
    for name, options in chosen:
        results[name] = estimate(run, test, indices, options, seed=args.seed, cache=cache, desc=name)
        print(f"{name}: accuracy {100 * np.mean(results[name]['prediction'] == labels):.1f} %, "
              f"{results[name]['seconds_per_image']:.3g} s per image", flush=True)
    near, reference = indices[:args.reference_images], None
    if len(near):
        solved = estimate(run, test, near, dataclasses.replace(default_options, **REFERENCE), seed=args.seed,
                          cache=cache, desc="reference")
        reference = {"scores": solved["scores"], "prediction": solved["prediction"], "images": len(near),
                     "accuracy": float(np.mean(solved["prediction"] == labels[:len(near)])),
                     "seconds_per_image": float(solved["seconds_per_image"]),
                     "nfe_per_image": float(np.mean(solved["nfe"]))}
    default = results[chosen[0][0]]
    rows = [row(name, results[name], default, reference, labels) for name, _ in chosen]
    text = markdown(rows, reference, len(indices))
    print(text)
    out = args.out or args.run / "benchmark_cost"
    write_text(out / "cost.md", text)
    write_json(out / "cost.json", {"run": str(args.run), "images": len(indices), "rows": rows,
                                   "reference": reference and {k: v for k, v in reference.items()
                                                              if k not in ("scores", "prediction")}})
    if not args.no_curve and len(near):
        curve = solver_curve(run, test, near, default_options, seed=args.seed, cache=cache)
        write_text(out / "curve.md", curve_markdown(curve))
        write_json(out / "curve.json", curve)
        plot_curve(out / "curve.png", curve, f"{run.config.preset}: solver error against cost, 1 probe")
        print(curve_markdown(curve))
    return rows


if __name__ == "__main__":
    main()
