"""Table 1's throughput and predictions at two commits, side by side on one machine.

    python -m benchmarks.commits --before 33a4b5b --run runs/digits   # about 5 minutes on 2 cores

Checks out `--before` and `--after` (default HEAD) into temporary git worktrees and runs
`python -m experiments.table1 --run RUN --limit N` in each as a separate process,
alternating before/after `--rounds` times, so that a drift in the machine's speed falls
on both. Prints each round's images/s (chunks that may include compiling left out, as
table1 reports it), the after/before ratio of the medians, and how far the per-image
log p(x | y) and predictions of the two commits are apart. Exits 1 if a prediction differs.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from experiments.files import read_lines


def run_table1(worktree: Path, run: Path, limit: int, out: Path) -> tuple[dict, list[dict]]:
    subprocess.run([sys.executable, "-m", "experiments.table1", "--run", str(run.resolve()),
                    "--limit", str(limit), "--out", str(out)],
                   cwd=worktree, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "table1.json").read_text()), read_lines(out / "images.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.commits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
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
                    summary, lines[name] = run_table1(trees[name], args.run, args.limit,
                                                      Path(scratch) / f"{name}-{round_}")
                    speeds[name].append(summary["images_per_second"])
                    print(f"round {round_ + 1}, {name} ({commits[name]}): "
                          f"{summary['images_per_second']:.3f} images/s, accuracy {summary['accuracy']:.4f}",
                          flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], check=True)

    medians = {name: float(np.median(s)) for name, s in speeds.items()}
    log_p = {name: np.array([line["log_probs"] for line in lines[name]]) for name in commits}
    differing = sum(a["prediction"] != b["prediction"] for a, b in zip(lines["before"], lines["after"], strict=True))
    print(f"| commit | images/s (median of {args.rounds}) | after / before |\n| --- | ---: | ---: |")
    print(f"| before {args.before} | {medians['before']:.3f} | 1.00 |")
    print(f"| after {args.after} | {medians['after']:.3f} | {medians['after'] / medians['before']:.2f} |")
    print(f"{args.limit} test images of {args.run}: {differing} predictions differ; largest |log p difference| "
          f"{np.max(np.abs(log_p['before'] - log_p['after'])):.2e} nats")
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
