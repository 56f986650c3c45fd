"""How long a training run's loop took, from its log.

    python -m benchmarks.training_time runs/fashion-mnist/log.jsonl

Each line of `log.jsonl` holds the steps/s since the line before it, so the sum of
steps / (steps/s) is the loop's time, sample grids and checkpoints included, start-up and
compiling before the first step of each (re)start left out. Stretches beside other jobs
are slower; the median rate, which they barely move, gives the time alone.
"""

import argparse
import statistics
from pathlib import Path

from experiments.files import read_lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_time", description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path)
    lines = read_lines(parser.parse_args().log)
    if not lines:
        raise SystemExit("no log lines")
    rates = [line["steps_per_second"] for line in lines]
    steps = [line["step"] - before["step"] for before, line in zip([{"step": 0}, *lines], lines)]
    hours = sum(n / rate for n, rate in zip(steps, rates, strict=True)) / 3600
    median = statistics.median(rates)
    print(f"{lines[-1]['step']} steps in {len(lines)} log lines: loop time {hours:.2f} h; median "
          f"{median:.3f} steps/s, so {lines[-1]['step'] / median / 3600:.2f} h at that rate; "
          f"last mean loss {lines[-1]['loss']:.4f}")


if __name__ == "__main__":
    main()
