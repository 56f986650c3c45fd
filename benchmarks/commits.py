"""Table 1's (or table3's) throughput and predictions at two commits, side by side on one machine.

    python -m benchmarks.commits --before 33a4b5b --run runs/digits   # about 5 minutes on 2 cores
    python -m benchmarks.commits --before 6954846 --entry table3 --limit 2 --rounds 1

Checks out `--before` and `--after` (default HEAD) into temporary git worktrees and runs
`python -m experiments.ENTRY --run RUN --limit N` in each as a separate process,
alternating before/after `--rounds` times, so that a drift in the machine's speed falls
on both. Prints each round's speed (table1's images/s, chunks that may include compiling
left out; table3's seconds per image inverted), the after/before ratio of the medians,
and how far the per-image scores (log p(x | y); for table3 clean and under every
attack) and predictions of the two commits are apart. Records of either schema are read
(`benchmarks.migrate_records`). Exits 1 if a prediction differs.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from experiments.files import read_lines


def run_entry(worktree: Path, entry: str, run: Path, limit: int, out: Path) -> tuple[float, list[dict]]:
    """images/s and the records of `entry` run in `worktree`."""
    subprocess.run([sys.executable, "-m", f"experiments.{entry}", "--run", str(run.resolve()),
                    "--limit", str(limit), "--out", str(out)],
                   cwd=worktree, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((out / f"{entry}.json").read_text())
    speed = summary["images_per_second"] if entry == "table1" else 1 / summary["seconds_per_image"]
    return speed, read_lines(out / "images.jsonl")


def scored_parts(line: dict) -> dict[str, tuple[int, list[float]]]:
    """(prediction, scores) of a record by part: "clean", and every attack of a table3 record;
    either record schema."""
    if "attacks" in line:
        return {"clean": (line["clean"]["prediction"], line["clean"]["scores"]),
                **{name: (a["prediction"], a["scores"]) for name, a in line["attacks"].items()}}
    if "clean_prediction" in line:
        scores = "clean_log_probs" if "clean_log_probs" in line else "clean_logits"
        parts = {"clean": (line["clean_prediction"], line[scores])}
        for name, attacked in line.items():
            if isinstance(attacked, dict):
                parts[name] = (attacked["prediction"], attacked.get("log_probs", attacked.get("logits")))
        return parts
    return {"clean": (line["prediction"], line.get("scores", line.get("log_probs", line.get("logits"))))}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.commits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--entry", choices=("table1", "table3"), default="table1")
    parser.add_argument("--run", type=Path, default=Path("runs/digits"))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not (args.run / "checkpoint.eqx").exists():
        raise SystemExit(f"{args.run}: no checkpoint.eqx; train it first (python -m experiments.train)")

    with tempfile.TemporaryDirectory() as scratch:
        commits = {"before": args.before, "after": args.after}
        trees = {}
        for name, commit in commits.items():
            trees[name] = Path(scratch) / name
            subprocess.run(["git", "worktree", "add", "--detach", str(trees[name]), commit],
                           check=True, capture_output=True)
        try:
            speeds, lines = {name: [] for name in commits}, {}
            for round_ in range(args.rounds):
                for name in commits:
                    speed, lines[name] = run_entry(trees[name], args.entry, args.run, args.limit,
                                                   Path(scratch) / f"{name}-{round_}")
                    speeds[name].append(speed)
                    print(f"round {round_ + 1}, {name} ({commits[name]}): {speed:.4f} images/s", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], check=True)

    medians = {name: float(np.median(s)) for name, s in speeds.items()}
    parts = {name: [scored_parts(line) for line in lines[name]] for name in commits}
    differing, largest = 0, 0.0
    for before, after in zip(parts["before"], parts["after"], strict=True):
        assert before.keys() == after.keys(), (before.keys(), after.keys())
        for part in before:
            differing += before[part][0] != after[part][0]
            largest = max(largest, float(np.max(np.abs(np.subtract(before[part][1], after[part][1])))))
    print(f"| commit | images/s (median of {args.rounds}) | after / before |\n| --- | ---: | ---: |")
    print(f"| before {args.before} | {medians['before']:.4f} | 1.00 |")
    print(f"| after {args.after} | {medians['after']:.4f} | {medians['after'] / medians['before']:.2f} |")
    print(f"{args.entry} on {args.limit} test images of {args.run} ({len(parts['after'][0])} scored part(s) each: "
          f"{', '.join(parts['after'][0])}): {differing} predictions differ; largest |score difference| "
          f"{largest:.2e}")
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
