"""Figure 1: accuracy against bits/dim, and each run's path through training.

    python -m experiments.figure1 --runs runs/digits,runs/digits-wrn --out results/digits/figure1

The paper places generative classifiers on accuracy against bits/dim and
shows SBGC escaping the trade-off earlier models showed. Here every given
score run is a point, from its table1 results (RUN/table1/table1.json;
`python -m experiments.table1 --run RUN` makes them), and a run trained with
`--keep-checkpoints` is also a path: each kept checkpoint is classified on
the same seeded subset of test images (--limit) with table1's estimator, so
the path shows whether accuracy rises as bits/dim falls, or whether they
trade. A discriminative run (a WideResNet) has no bits/dim: it is a
horizontal line at its table1 accuracy, as the paper draws its
discriminative state of the art. A second panel holds the published
CIFAR-10 numbers of docs/method.md §5 (none from memory). Writes `figure1.png` and
`figure1.json`; each checkpoint's per-image results stay in
OUT/RUN-NAME/step_N/ and a rerun continues from them.
"""

import dataclasses
import json
import math
from pathlib import Path

from experiments import estimates, pictures
from experiments.backend import BackendOptions
from experiments.cli import option, parse_config
from experiments.data import load_dataset
from experiments.estimates import EstimateOptions, accuracy_and_bits, classify_test_images
from experiments.files import write_json
from experiments.results import data_option, claim, defaults_of, evaluation_order, results_folder, results_folders, settings_of
from experiments.checkpoint import kept_checkpoints
from experiments.runs import load_run

# docs/method.md §5 (the paper's Table 1, CIFAR-10): accuracy and bits/dim where both are given.
PUBLISHED_POINTS = [("SBGC (Zimmermann et al. 2021)", 3.11, 0.9504)]
PUBLISHED_LINES = [("WideResNet-28-12 (baseline in the paper)", 0.9542)]


@dataclasses.dataclass(frozen=True)
class Figure1Config(EstimateOptions, BackendOptions):
    runs: str = option("comma-separated training run folders", "runs/digits")
    folders: str | None = option("table1 results kept elsewhere than RUN/table1, as "
                                 "RUN:table1=FOLDER,... (as experiments.compare takes them)")
    out: Path = option("results folder", Path("results/figure1"))
    limit: int = option("test images (a seeded subset) per kept checkpoint", 100)
    seed: int = option("seed of the subset, the dequantisation noise and the probes", 0)
    data: str | None = data_option()


def run_point(folder: Path) -> dict | None:
    """The table1 result in `folder`: accuracy, and bits/dim where it has one."""
    path = folder / "table1.json"
    if not path.is_file():
        return None
    table1 = json.loads(path.read_text())
    return {"accuracy": table1["accuracy"], "bits_per_dim": table1.get("bits_per_dim"),
            "num_images": table1["num_images"]}


def checkpoint_path(config: Figure1Config, folder: Path) -> list[dict]:
    """(step, bits/dim, accuracy) of every kept checkpoint of the score run in `folder`."""
    points = []
    for step, checkpoint in kept_checkpoints(folder):
        run = load_run(folder, checkpoint)
        options = estimates.resolve(config, run.config.preset)
        test = load_dataset(run.config.preset, "test", source=config.data)
        order = evaluation_order(len(test.labels), config.limit, config.seed)
        out = config.out / folder.name / f"step_{step:07d}"
        settings = {**settings_of(options), "runs": str(folder), "checkpoint": checkpoint}
        records = classify_test_images(estimates.classifier_of(run, options), options.images_per_solve,
                                       test, order, claim(out, settings, run, defaults_of(Figure1Config)), seed=config.seed,
                                       desc=f"{folder.name} step {step}")
        summary = accuracy_and_bits(records, math.prod(test.images.shape[1:]))
        points.append({"step": step, "accuracy": summary["accuracy"],
                       "bits_per_dim": summary["bits_per_dim"], "num_images": len(records)})
    return points


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(Figure1Config, argv, prog="python -m experiments.figure1",
                          description=__doc__.split("\n\n")[0],
                          preset_defaults=estimates.PRESET_EVALUATION)
    runs, chosen = {}, results_folders(config.folders)
    for name in (r for r in config.runs.split(",") if r):
        folder = Path(name)
        kind = estimates.classifier_of(load_run(folder)).kind
        point = run_point(results_folder(name, "table1", chosen))
        runs[str(folder)] = {"kind": kind, "point": point,
                             "path": checkpoint_path(config, folder) if kind == "likelihood" else []}
        if runs[str(folder)]["point"] is None and not runs[str(folder)]["path"]:
            raise FileNotFoundError(f"{folder}: no table1 results and no kept checkpoints; run "
                                    f"`python -m experiments.table1 --run {folder}` first")
    result = {"runs": runs, "limit": config.limit, "published_points": PUBLISHED_POINTS,
              "published_lines": PUBLISHED_LINES}
    write_json(config.out / "figure1.json", result)
    pictures.figure1(config.out / "figure1.png", runs, config.limit, PUBLISHED_POINTS, PUBLISHED_LINES)
    print(f"wrote {config.out / 'figure1.png'} and {config.out / 'figure1.json'}")
    return result


if __name__ == "__main__":
    main()
