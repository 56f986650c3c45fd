"""What every evaluation entry point shares: its results folder, per-image lines, resume.

An entry point (table1, table2, table3, ...) is its settings, what it
computes for one chunk of test images, and how it summarises. This module is
the rest:

- `claim`: the folder's `config.json` holds the settings and the evaluated
  model's fingerprint; a rerun continues only with the same ones, and the
  error names what changed (a model trained further, another --probes, ...).
- `evaluation_order`: which test images, all or a seeded subset.
- `run_chunks`: computes chunk after chunk, appending each chunk's lines to
  `images.jsonl` in one write, behind a progress bar. A rerun continues
  after the last whole chunk (the images of one solve share its steps, so a
  chunk recomputed with other companions would not give the same numbers),
  once it has checked that the kept lines are the chunks' items in order.
  Ctrl-C exits with status 130 and says where the lines are.
- one process at a time per results folder: `run_chunks` holds it
  (`experiments.files.locked`, as training holds its run folder).
- `write_summary`: NAME.json and NAME.md, atomically.
"""

import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments import backend, checkpoint
from experiments.backend import BackendOptions
from experiments.cli import option
from experiments.files import append_lines, locked, read_lines, write_json, write_lines, write_text
from experiments.progress import progress
from experiments.runs import Run
from experiments.stopping import stops_as_interrupt

RESULTS_FILE = "images.jsonl"


def data_option():
    """The `--data` field of every entry point that reads a data set."""
    return option("data source: a local folder or 'hub' (default: the preset's)")


@dataclasses.dataclass(frozen=True)
class RunOptions(BackendOptions):
    """The options every evaluation entry point has: which run, where, which data, seed, and
    the backend's."""

    run: Path = option("training run folder (experiments.train --out)", Path("runs/digits"))
    out: Path | None = option("results folder (default: RUN/<entry point>)")
    seed: int = option("seed of the subset, the dequantisation noise and the probes", 0)
    data: str | None = data_option()


@dataclasses.dataclass(frozen=True)
class EvaluationConfig(RunOptions):
    """`RunOptions` and how many test images."""

    limit: int | None = option("evaluate a seeded random subset of this many test images "
                               "(default: the whole test split)")


def claim(folder: Path, settings: dict, run: Run, defaults: dict | None = None) -> Path:
    """Make `folder` the results folder of `settings` on `run`'s model, or check that it is
    (a rerun continues only with the same settings and model); returns its images.jsonl.
    A setting that the folder's record lacks (an option added since it was made) is
    accepted at its value in `defaults` (`defaults_of` the entry point's config), the
    behaviour the folder was made with."""
    record = {"settings": settings, "model": run.fingerprint(), "backend": backend.record()}
    if (folder / checkpoint.CONFIG_FILE).exists():
        saved = checkpoint.load_config(folder).get("settings", {})
        added_later = tuple(f"settings.{name}" for name, value in (defaults or {}).items()
                            if name not in saved and settings.get(name) == value)
        checkpoint.check_same_config(folder, record, ignore=(*added_later, *backend.RECORD_KEYS))
    else:
        checkpoint.save_config(folder, record)
    return folder / RESULTS_FILE


def settings_of(config: Any) -> dict:
    """An entry point's resolved settings as saved beside its results: all but --out, --device
    and --compilation-cache (where and how the numbers are computed, not which; `backend.record`
    says where)."""
    return {k: v for k, v in checkpoint.to_json(config).items() if k not in ("out", "device", "compilation_cache")}


def defaults_of(config_class: type) -> dict:
    """The settings of an entry point's config left at every default (`claim`)."""
    return settings_of(config_class())


def evaluation_order(num_images: int, limit: int | None, seed: int, flag: str = "--limit") -> np.ndarray:
    """Test-set indices to evaluate: all, or a seeded random subset in index order (`flag`: the
    option that gave `limit`, for the error)."""
    if limit is not None and limit < 1:
        raise ValueError(f"{flag} must be at least 1, got {limit}")
    if limit is not None and limit > num_images:
        raise ValueError(f"{flag} {limit} is more than the {num_images} test images: leave it out to "
                         "evaluate them all")
    if limit is None or limit == num_images:
        return np.arange(num_images)
    return np.sort(np.random.default_rng(seed).choice(num_images, limit, replace=False))


def index_of(record: dict) -> Any:
    """What a record is of: its test-set index (the items of most entry points' chunks)."""
    return record["index"]


def _check_kept(path: Path, records: list[dict], items: list[Any], identify: Callable[[dict], Any]) -> None:
    """Refuse kept records that are not the chunks' items in order, once each (another
    command's, or two processes' interleaved), naming the first that is not."""
    for line, (record, item) in enumerate(zip(records, items), start=1):
        if identify(record) != item:
            raise checkpoint.CheckpointError(
                f"{path}: line {line} holds {identify(record)!r} where {item!r} was expected: the file "
                "was written by another command or by two processes at once; move it away (or use "
                "another --out) and run again")


def run_chunks(
    path: Path,
    chunks: Sequence[Sequence[Any]],
    compute: Callable[[Sequence[Any], bool], list[dict]],
    *,
    desc: str,
    postfix: Callable[[list[dict]], dict] | None = None,
    identify: Callable[[dict], Any] = index_of,
) -> list[dict]:
    """The lines of every chunk: those in `path` already, then `compute(chunk, compiling)`
    for the rest, one line per item (`identify(line)` gives its item). `compiling` is true
    for the first chunk this process computes, whose time may include compiling (speed
    figures leave it out). The folder is this process's while it runs (`locked`)."""
    with locked(path.parent):
        return _run_chunks(path, chunks, compute, desc, postfix, identify)


def _run_chunks(path, chunks, compute, desc, postfix, identify) -> list[dict]:
    boundaries = np.cumsum([0, *(len(chunk) for chunk in chunks)])
    records = read_lines(path)
    done = int(np.searchsorted(boundaries, len(records), side="right")) - 1
    records = records[: boundaries[done]]
    _check_kept(path, records, [item for chunk in chunks for item in chunk], identify)
    write_lines(path, records)
    bar = progress(total=int(boundaries[-1]), initial=len(records), desc=desc, unit="image")
    with stops_as_interrupt() as stop:
        try:
            for number in range(done, len(chunks)):
                stop.check()
                lines = compute(chunks[number], number == done)
                if len(lines) != len(chunks[number]):
                    raise RuntimeError(f"{desc}: {len(lines)} lines for a chunk of {len(chunks[number])}")
                append_lines(path, lines)
                records += lines
                if postfix is not None:  # before the update, which may print it
                    bar.set_postfix(postfix(records), refresh=False)
                bar.update(len(lines))
        except KeyboardInterrupt:
            bar.close()
            # XLA does not cancel a computation it has started, and Python's exit waits for it
            # (minutes for a large chunk). Leaving the block puts the previous handlers back, so
            # a second SIGTERM ends the process at once; that chunk would be dropped anyway.
            print(f"\ninterrupted after {len(records)} images: results so far in {path}; "
                  "the same command continues from them. The computation already running "
                  "finishes before the process exits; a second kill (SIGTERM) ends it at once",
                  file=sys.stderr)
            raise SystemExit(130) from None
    bar.close()
    return records


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """`items` in consecutive chunks of `size` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"a chunk needs at least one image, got {size}")
    return [items[start:start + size] for start in range(0, len(items), size)]


def running_accuracy(records: list[dict]) -> dict:
    """Progress-bar postfix: the accuracy of the lines so far."""
    return {"accuracy": f"{np.mean([r['label'] == r['prediction'] for r in records]):.3f}"}


def results_folders(option: str | None) -> dict[str, Path]:
    """`--folders RUN:TABLE=FOLDER,...` as {"RUN:TABLE": FOLDER}: results kept elsewhere than
    RUN/TABLE (e.g. committed under results/)."""
    chosen = {}
    for item in (option or "").split(","):
        if item:
            if "=" not in item or ":" not in item.split("=", 1)[0]:
                raise ValueError(f"--folders takes RUN:TABLE=FOLDER items, got {item!r}")
            name, folder = item.split("=", 1)
            chosen[name] = Path(folder)
    return chosen


def results_folder(run: str, table: str, chosen: dict[str, Path]) -> Path:
    return chosen.get(f"{run}:{table}", Path(run) / table)


def write_summary(folder: Path, name: str, summary: dict, markdown: str) -> None:
    write_json(folder / f"{name}.json", summary)
    write_text(folder / f"{name}.md", markdown)
