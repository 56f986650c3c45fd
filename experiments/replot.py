"""Redraw the pictures of results and run folders from the files saved in them.

    python -m experiments.replot --folders results/digits/figure1,results/digits/figure2

After a change to how a figure is drawn, the committed pictures follow from
the committed numbers, computing nothing: figure1.png from figure1.json,
figure2.png from figure2.json, table3's examples.png from images.jsonl and
examples.npz (figure4 draws from table2.json alone: rerun it). A run folder
gets the sample grid of its checkpoint, sampled again: the draws of its step.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from experiments import checkpoint, pictures
from experiments.cli import option, parse_config
from experiments.data import load_dataset
from experiments.files import read_lines
from experiments.runs import load_run
from experiments.training import MODELS


@dataclasses.dataclass(frozen=True)
class ReplotConfig:
    folders: str = option("comma-separated results folders of figure1, figure2 or table3, or run folders", "")


def _figure1(folder: Path) -> Path:
    saved = json.loads((folder / "figure1.json").read_text())
    pictures.figure1(folder / "figure1.png", saved["runs"], saved["limit"], saved["published_points"],
                     saved["published_lines"])
    return folder / "figure1.png"


def _figure2(folder: Path) -> Path:
    pictures.figure2(folder / "figure2.png", json.loads((folder / "figure2.json").read_text()))
    return folder / "figure2.png"


def _table3(folder: Path) -> Path:
    with np.load(folder / "examples.npz") as examples:
        pictures.table3_examples(folder, read_lines(folder / "images.jsonl"), dict(examples))
    return folder / "examples.png"


def _samples(folder: Path) -> Path:
    run = load_run(folder)
    if not (MODELS[run.config.model].samples and run.config.samples_per_class):
        raise ValueError(f"{folder}: this run draws no samples (a {run.config.model} run, "
                         f"--samples-per-class {run.config.samples_per_class})")
    class_names = load_dataset(run.config.preset, "test", source=run.config.data).class_names
    return pictures.training_samples(folder, run.model, run.step, run.config.samples_per_class, class_names)


# The file that marks a folder's kind, and how its picture is redrawn.
REDRAWN = {"figure1.json": _figure1, "figure2.json": _figure2, "examples.npz": _table3,
           checkpoint.CHECKPOINT_FILE: _samples}


def replot(folder: Path) -> Path:
    """Redraw the picture of one results folder; returns its path."""
    for marker, redraw in REDRAWN.items():
        if (folder / marker).is_file():
            return redraw(folder)
    raise FileNotFoundError(f"{folder}: none of {', '.join(REDRAWN)}; is it a results folder of figure1, "
                            "figure2 or table3, or a run folder?")


def main(argv: list[str] | None = None) -> list[Path]:
    config = parse_config(ReplotConfig, argv, prog="python -m experiments.replot",
                          description=__doc__.split("\n\n")[0])
    folders = [Path(f) for f in config.folders.split(",") if f]
    if not folders:
        raise ValueError("--folders names no results folder")
    drawn = [replot(folder) for folder in folders]
    for path in drawn:
        print(f"wrote {path}")
    return drawn


if __name__ == "__main__":
    main()
