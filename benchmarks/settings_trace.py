"""How far table1's settings travel before a library value holds them: a call trace.

    python -m benchmarks.settings_trace --run runs/digits      # seconds (one image, loose tolerance)

Runs `experiments.table1` on one test image under `sys.settrace` and lists, in
call order, every function of the project's entry points (`experiments/`)
that is handed the estimator's settings in one of their command-line forms:
the config itself, or an object or dict made by copying its fields (an
options dataclass, an estimate dataclass, a dict with an "rtol" key). The
trace ends at the first call into the libraries (`classify/`, `likelihood/`,
`attacks/`) that receives them: from there on one library value or function
holds the settings. Comprehensions and lambdas are left out. Stops on the way
into the results folder's record of the settings (`settings_of`, `to_json`,
`claim`) are listed apart. Works at any commit that has table1: copy it into
a worktree of the older commit to compare.
"""

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("classify", "likelihood", "attacks")
RECORDING = ("settings_of", "to_json", "claim")


def carries_settings(value, config) -> bool:
    """The config, or one of its copies: a plain dataclass or dict with the solver's rtol."""
    if value is config:
        return True
    if isinstance(value, dict):
        return "rtol" in value
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "rtol") \
        and type(value).__module__.startswith("experiments")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.settings_trace", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/digits"))
    args = parser.parse_args()

    from experiments import table1

    with tempfile.TemporaryDirectory() as out:
        config = table1.parse_config(
            table1.Table1Config, ["--run", str(args.run), "--out", out, "--limit", "1", "--rtol", "1e-2",
                                  "--atol", "1e-2", "--probes", "1"],
            prog="table1", description="")
        stops, end = [], []

        def tracer(frame, event, arg):
            if event != "call" or end:
                return None
            code = frame.f_code
            path = Path(code.co_filename).resolve()
            if ROOT not in path.parents or ".venv" in path.parts or not path.is_file() or "<" in code.co_qualname:
                return None
            names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 0x08)]
            values = [frame.f_locals[name] for name in names if name in frame.f_locals]
            if not any(carries_settings(v, config) for v in values):
                return None
            stop = (str(path.relative_to(ROOT)), code.co_qualname)
            if stop[0].split("/")[0] in LIBRARIES:
                end.append(stop)
            elif stop not in stops:
                stops.append(stop)
            return None

        sys.settrace(tracer)
        try:
            table1.evaluate(config)
        finally:
            sys.settrace(None)
    recording = [s for s in stops if s[1] in RECORDING]
    estimate = [s for s in stops if s[1] not in RECORDING]
    for file, function in estimate:
        print(f"{file}: {function}")
    print(f"-> the libraries, first at {end[0][0]}: {end[0][1]}" if end else "-> never into the libraries")
    print(f"and, into the results folder's record: {', '.join(f'{f}: {g}' for f, g in recording)}")
    print(f"{len(estimate)} stops in {len({f for f, _ in estimate})} files before a library holds the settings "
          f"({len(estimate) + len(recording)} with the record's)")


if __name__ == "__main__":
    main()
