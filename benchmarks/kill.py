"""Kill tests: SIGKILL at seeded random moments, resume, and compare with a run never killed.

    python -m benchmarks.kill --out results/digits/kill_test   # about 15 minutes on 2 cores

Training: a short digits run (`--steps 800 --checkpoint-every 20`, one log line per
step) is killed `--kills` times, each at a moment drawn uniformly from
[1, 30] s after its (re)start (seeded), and resumed each time (`--resume` once a
checkpoint exists); then it runs to the end. Its `checkpoint.eqx` (parameters, EMA,
optimiser state, step, key) must equal, byte for byte, the one of the same command
never killed. Lost steps per kill: the last step that start logged before the kill minus
the step the next start resumes from (at most `--checkpoint-every`).

Table 1: `experiments.table1 --limit 40 --images-per-solve 4` on the uninterrupted run,
killed 3 times (seeded moments between 0.3 and 1 times the uninterrupted command's time)
and resumed, against the same command never killed:
`table1.json` must agree in everything but timings.

Writes `kills.jsonl` (one line per kill) and `summary.json` in --out (the run folders go
to a temporary folder); exits 1 if a comparison fails. Subprocesses are separate Python processes, as a user's would be.
"""

import argparse
import hashlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.files import read_lines, write_json, write_lines

TRAINING = ["--preset", "digits", "--steps", "800", "--checkpoint-every", "20", "--log-every", "1",
            "--samples-per-class", "0"]
TABLE1 = ["--limit", "40", "--images-per-solve", "4"]
TIMINGS = ("images_per_second",)


def _module(name: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", name, *args]


def _run_to_end(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _kill_after(command: list[str], seconds: float) -> bool:
    """Start `command`, SIGKILL it after `seconds`; False if it ended before."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=seconds)
        if process.returncode != 0:
            raise subprocess.CalledProcessError(process.returncode, command)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _log_identity(run: Path) -> int | None:
    """The log's inode: a start rewrites the log (trimmed to its checkpoint) before its first step."""
    path = run / "log.jsonl"
    return path.stat().st_ino if path.exists() else None


def _last_step_logged_since(run: Path, identity: int | None, started_at: int) -> int:
    """The last step this start logged (`started_at` if it was killed before it rewrote the log)."""
    lines = read_lines(run / "log.jsonl")
    if _log_identity(run) == identity or not lines:
        return started_at
    return lines[-1]["step"]


def _checkpoint_step(run: Path) -> int:
    """The step the next start resumes from (0 without a checkpoint)."""
    from experiments.runs import load_run  # jax only where needed

    return load_run(run).step if (run / "checkpoint.eqx").exists() else 0


def kill_training(scratch: Path, kills: int, rng: np.random.Generator) -> dict:
    reference, killed = scratch / "runs" / "never_killed", scratch / "runs" / "killed"
    seconds = _run_to_end(_module("experiments.train", [*TRAINING, "--out", str(reference)]))
    records = []
    for kill in range(kills):
        resume = ["--resume"] if (killed / "checkpoint.eqx").exists() else []
        moment = float(rng.uniform(1, 30))
        start_step, identity = _checkpoint_step(killed), _log_identity(killed)
        was_killed = _kill_after(_module("experiments.train", [*TRAINING, "--out", str(killed), *resume]), moment)
        reached = _last_step_logged_since(killed, identity, start_step)
        resumes_from = _checkpoint_step(killed)
        records.append({"kill": kill, "seconds_after_start": round(moment, 2), "killed": was_killed,
                        "started_at_step": start_step, "last_step_logged": reached,
                        "resumes_from_step": resumes_from, "lost_steps": max(0, reached - resumes_from)})
        print(json.dumps(records[-1]), flush=True)
    _run_to_end(_module("experiments.train", [*TRAINING, "--out", str(killed), "--resume"]))
    identical = _sha256(reference / "checkpoint.eqx") == _sha256(killed / "checkpoint.eqx")
    lost = [r["lost_steps"] for r in records if r["killed"]]
    return {"command": TRAINING, "uninterrupted_seconds": round(seconds, 1), "kills": records,
            "kills_that_hit_a_running_process": len(lost), "lost_steps_max": max(lost, default=0),
            "lost_steps_mean": float(np.mean(lost)) if lost else 0.0,
            "checkpoint_bit_identical": identical}


def _without_timings(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMINGS}


def kill_table1(scratch: Path, run: Path, rng: np.random.Generator) -> dict:
    reference, killed = scratch / "table1" / "never_killed", scratch / "table1" / "killed"
    common = ["--run", str(run), *TABLE1]
    seconds = _run_to_end(_module("experiments.table1", [*common, "--out", str(reference)]))
    records = []
    for kill in range(3):
        moment = float(rng.uniform(0.3, 1.0) * seconds)
        was_killed = _kill_after(_module("experiments.table1", [*common, "--out", str(killed)]), moment)
        done = len(read_lines(killed / "images.jsonl"))
        records.append({"kill": kill, "seconds_after_start": round(moment, 2), "killed": was_killed,
                        "images_done": done})
        print(json.dumps(records[-1]), flush=True)
    _run_to_end(_module("experiments.table1", [*common, "--out", str(killed)]))
    summaries = [json.loads((folder / "table1.json").read_text()) for folder in (reference, killed)]
    differing = sorted(k for k in _without_timings(summaries[0])
                       if _without_timings(summaries[0])[k] != _without_timings(summaries[1]).get(k))
    return {"command": TABLE1, "uninterrupted_seconds": round(seconds, 1), "kills": records, "table1_json_equal_but_timings": not differing,
            "differing_keys": differing}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/digits/kill_test"))
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="sbgc-kill-"))  # the run folders, checkpoints and all
    rng = np.random.default_rng(args.seed)
    training = kill_training(scratch, args.kills, rng)
    write_lines(args.out / "kills.jsonl", training["kills"])
    table1 = kill_table1(scratch, scratch / "runs" / "never_killed", rng)
    summary = {"command": f"python -m benchmarks.kill --out {args.out} --kills {args.kills} --seed {args.seed}",
               "training": {k: v for k, v in training.items() if k != "kills"}, "table1": table1}
    write_json(args.out / "summary.json", summary)
    print(json.dumps(summary, indent=2))
    if not (training["checkpoint_bit_identical"] and table1["table1_json_equal_but_timings"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
