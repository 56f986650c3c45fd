"""Convert results folders of the first record schema (before 2026-12-01) to the current one.

    python -m benchmarks.migrate_records results

Before the classifier values, a record's key names said what kind of model
made it (`log_probs` and `nfe` for a score network, `logits` for a
WideResNet; table3's `clean_prediction` and one key per attack such as
`linf_fixed`). Now every record has `kind`, `scores` and `cost` (the schema in
`experiments.estimates`; table3's in `experiments.table3`). This rewrites
every `images.jsonl` found under the given folders, once: records already in
the current schema are left as they are. Where the folder has a summary
(table1.json, table2.json, table3.json), the summary recomputed from the
converted records must equal the saved one but for the new `kind` field, or
nothing of that folder is written; the summary is then saved with `kind`.
figure1.json's run kinds ("score", "wrn") become the classifier's kinds.
"""

import argparse
import json
import math
from pathlib import Path

import score
from attacks import MODES
from experiments import table1, table2, table3
from experiments.files import read_lines, write_json, write_lines
from experiments.results import RESULTS_FILE, write_summary

KINDS = {"score": "likelihood", "wrn": "logits"}


def _scored(old: dict, prefix: str = "") -> tuple[str, list[float]]:
    """The kind and the scores of an old record (or of its `prefix`ed clean part)."""
    if f"{prefix}log_probs" in old:
        return "likelihood", old[f"{prefix}log_probs"]
    return "logits", old[f"{prefix}logits"]


def convert_classification(old: dict) -> dict:
    """A table1/table2 record (and figure1's per-checkpoint ones)."""
    kind, scores = _scored(old)
    cost = ({"nfe": old["nfe"], "passes": old["evaluations"]} if kind == "likelihood"
            else {"nfe": 0, "passes": 1})
    place = {k: old[k] for k in ("corruption", "severity") if k in old}
    return {**place, "index": old["index"], "label": old["label"], "kind": kind,
            "prediction": old["prediction"], "scores": scores, "cost": cost,
            "seconds": old["seconds"], "compiling": old["compiling"]}


def convert_attacks(old: dict, settings: dict) -> dict:
    """A table3 record; the old records kept no clean cost (None) and, for a score network,
    no gradient count, which the settings give: steps, times the draws for EOT."""
    kind, clean_scores = _scored(old, "clean_")
    attacks = {}
    for norm in table3.NORMS:
        for mode in MODES:
            if f"{norm}_{mode}" not in old:
                continue
            attacked = old[f"{norm}_{mode}"]
            if kind == "likelihood":
                draws = settings["eot_draws"] if mode == "eot" else 1
                cost = {"nfe": attacked["nfe"], "gradients": settings["steps"] * draws}
            else:
                cost = {"nfe": 0, "gradients": attacked["gradients"]}
            attacks[f"{norm}_{mode}"] = {
                "prediction": attacked["prediction"], "scores": attacked["log_probs" if kind == "likelihood" else "logits"],
                "perturbation_norm": attacked["perturbation_norm"], "cost": cost}
    return {"index": old["index"], "label": old["label"], "kind": kind,
            "clean": {"prediction": old["clean_prediction"], "scores": clean_scores, "cost": {"nfe": None}},
            "attacks": attacks, "seconds": old["seconds"], "compiling": old["compiling"]}


def _recomputed(folder: Path, records: list[dict], settings: dict) -> tuple[str, dict, str] | None:
    """(table, summary, markdown) recomputed from converted records, for a folder with a summary."""
    for name in ("table1", "table2", "table3"):
        path = folder / f"{name}.json"
        if not path.is_file():
            continue
        saved = json.loads(path.read_text())
        settings = saved["settings"]  # as saved, in its order
        if name == "table1":
            num_classes = len(saved["confusion"])
            summary = table1.summarize_records(records, saved["model"], saved["preset"],
                                               _image_shape(saved["preset"]), settings, num_classes)
            markdown = table1.markdown_table(summary)
        elif name == "table2":
            summary = table2.summarize_records(records, saved["model"], saved["preset"],
                                               math.prod(_image_shape(saved["preset"])), settings)
            markdown = table2.markdown_table(summary)
        else:
            summary = table3.summarize(records, saved["model"], saved["preset"], settings)
            markdown = table3.markdown_table(summary)
        differing = sorted(k for k in set(summary) | set(saved) if k != "kind" and summary.get(k) != saved.get(k))
        if differing:
            raise ValueError(f"{path}: the converted records give other {', '.join(differing)}; nothing written")
        return name, summary, markdown
    return None


def _image_shape(preset: str) -> tuple[int, int, int]:
    config = score.PRESETS[preset]
    return config.image_size, config.image_size, config.channels


def migrate(folder: Path) -> str:
    """Convert one results folder; says what it did."""
    path = folder / RESULTS_FILE
    records = read_lines(path)
    if not records or "kind" in records[0] or "pair" in records[0]:
        return f"{folder}: nothing to convert"
    settings = json.loads((folder / "config.json").read_text())["settings"]
    if "clean_prediction" in records[0]:
        converted = [convert_attacks(r, settings) for r in records]
    else:
        converted = [convert_classification(r) for r in records]
    recomputed = _recomputed(folder, converted, settings)
    write_lines(path, converted)
    if recomputed is None:
        return f"{folder}: {len(converted)} records converted"
    name, summary, markdown = recomputed
    write_summary(folder, name, summary, markdown)
    return f"{folder}: {len(converted)} records converted; {name}.json recomputed equal (kind added)"


def migrate_figure1(path: Path) -> str:
    figure = json.loads(path.read_text())
    runs = figure["runs"]
    if all(run["kind"] not in KINDS for run in runs.values()):
        return f"{path}: nothing to convert"
    for run in runs.values():
        run["kind"] = KINDS.get(run["kind"], run["kind"])
    write_json(path, figure)
    return f"{path}: run kinds renamed"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.migrate_records",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders to search for results")
    args = parser.parse_args(argv)
    for root in args.folders:
        for path in sorted(root.rglob(RESULTS_FILE)):
            print(migrate(path.parent))
        for path in sorted(root.rglob("figure1.json")):
            print(migrate_figure1(path))


if __name__ == "__main__":
    main()
