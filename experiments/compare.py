"""The runs' tables side by side, as the paper sets SBGC beside a WideResNet.

    python -m experiments.compare --runs runs/digits,runs/digits-wrn --out results/digits/compare

Reads each run's table1, table2 and table3 results (RUN/tableN/tableN.json and
the images.jsonl beside it; --folders names other results folders) and puts
every table that two or more runs have into one Markdown table,
`compare.md`, with the numbers in `compare.json`. Results are compared only
when they were made on the same test images with the same seed: otherwise
the command stops and names the difference (which images, which seed).
"""

import dataclasses
import json
from pathlib import Path

from experiments.cli import option, parse_config
from experiments.files import read_lines, write_json, write_text
from experiments.results import RESULTS_FILE, results_folder, results_folders

TABLES = ("table1", "table2", "table3")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    runs: str = option("comma-separated training run folders", "runs/digits,runs/digits-wrn")
    folders: str | None = option(
        "comma-separated results folders, one per run and table as RUN:TABLE=FOLDER "
        "(default: RUN/TABLE)")
    out: Path = option("folder of compare.md and compare.json", Path("results/compare"))


class MismatchError(ValueError):
    """Two runs' results of one table were made on other images or with another seed."""


def _images(folder: Path) -> list:
    """What identifies each evaluated image: its test index (and corruption and severity)."""
    return sorted((r.get("corruption", ""), r.get("severity", 0), r["index"])
                  for r in read_lines(folder / RESULTS_FILE))


def check_comparable(table: str, results: dict[str, dict]) -> None:
    """Raise, naming the difference, unless every run's results used the same images and seed."""
    (first, reference), *others = results.items()
    for run, result in others:
        if result["settings"]["seed"] != reference["settings"]["seed"]:
            raise MismatchError(f"{table}: {first} used seed {reference['settings']['seed']}, "
                                f"{run} seed {result['settings']['seed']}; rerun one with the other's")
        if result["images"] != reference["images"]:
            only_first = len(set(reference["images"]) - set(result["images"]))
            only_other = len(set(result["images"]) - set(reference["images"]))
            raise MismatchError(
                f"{table}: {first} and {run} were evaluated on different test images ({only_first} "
                f"only in {first}, {only_other} only in {run}); rerun one with the other's --limit, "
                "--seed and, for table2, --corruptions")


def _percent(x) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def _bits(x) -> str:
    return "none (discriminative)" if x is None else f"{x:.3f}"


def markdown(table: str, results: dict[str, dict]) -> str:
    """One table, a row per run."""
    if table == "table1":
        header = "| run | model | images | accuracy (%) | bits/dim |"
        rows = [f"| {run} | {r['model']} | {r['num_images']} | {_percent(r['accuracy'])} "
                f"| {_bits(r['bits_per_dim'])} |" for run, r in results.items()]
    elif table == "table2":
        header = ("| run | model | images per corruption and severity | clean (%) | mean (%) "
                  "| mean without noises (%) |")
        rows = [f"| {run} | {r['model']} | {r['num_images']} | {_percent(r['clean_accuracy'])} "
                f"| {_percent(r['mean_accuracy'])} ({r['num_corruptions']} corruptions) "
                f"| {_percent(r['mean_accuracy_without_noises'])} "
                f"({r['num_corruptions_without_noises']} corruptions) |" for run, r in results.items()]
    else:
        header = ("| run | model | images | clean (%) | L-inf fixed (%) | L-inf EOT (%) | L2 fixed (%) "
                  "| L2 EOT (%) |")
        rows = [f"| {run} | {r['model']} | {r['num_images']} | {_percent(r['clean_accuracy'])} | "
                + " | ".join(_percent(r[norm][f"robust_accuracy_{mode}"])
                             + (" (same attack)" if r.get("deterministic") and mode == "eot" else "")
                             for norm in ("linf", "l2") for mode in ("fixed", "eot")) + " |"
                for run, r in results.items()]
    separator = "|" + " --- |" * (header.count("|") - 1)
    return "\n".join([f"## {table}", "", header, separator, *rows, ""])


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(CompareConfig, argv, prog="python -m experiments.compare",
                          description=__doc__.split("\n\n")[0])
    runs = [r for r in config.runs.split(",") if r]
    if len(runs) < 2:
        raise ValueError(f"--runs needs two or more comma-separated run folders, got {config.runs!r}")
    for run in runs:
        if not Path(run).is_dir():
            raise FileNotFoundError(f"--runs: {run}: no such run folder")
    chosen = results_folders(config.folders)
    compared, sections = {}, []
    for table in TABLES:
        results = {}
        for run in runs:
            folder = results_folder(run, table, chosen)
            if (folder / f"{table}.json").is_file():
                summary = json.loads((folder / f"{table}.json").read_text())
                results[run] = {**summary, "model": summary.get("model", "sbgc"),
                                "images": _images(folder)}
        if len(results) < 2:
            sections.append(f"## {table}\n\nFewer than two runs have {table} results "
                            f"({', '.join(results) or 'none'}).\n")
            continue
        check_comparable(table, results)
        compared[table] = {run: {k: v for k, v in r.items() if k != "images"} for run, r in results.items()}
        sections.append(markdown(table, results))
    text = "\n".join(sections)
    write_text(config.out / "compare.md", text)
    write_json(config.out / "compare.json", compared)
    print(text)
    return compared


if __name__ == "__main__":
    main()
