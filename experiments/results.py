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
- several processes (`experiments.distributed`): process i of n computes
  chunks i, i + n, ... on its own devices and appends each, as one line, to
  its own `images.processI.jsonl`; when every chunk is there, process 0
  writes them in order to `images.jsonl` and removes those files. A rerun,
  with any number of processes, continues from every whole chunk kept in
  either kind of file.
- one command at a time per results folder: `run_chunks` holds it
  (`experiments.files.locked`, as training holds its run folder); process 0
  holds it for all.
- `write_summary`: NAME.json and NAME.md, atomically, by process 0.
"""

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments import backend, checkpoint
from experiments.backend import BackendOptions
from experiments.cli import option
from experiments.distributed import holding, wait_for_the_others, writes_files
from experiments.files import append_lines, read_lines, write_json, write_lines, write_text
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
    elif writes_files():
        checkpoint.save_config(folder, record)
    return folder / RESULTS_FILE


def settings_of(config: Any) -> dict:
    """An entry point's resolved settings as saved beside its results: all but --out and
    `backend.WHERE_OPTIONS` (where and how the numbers are computed, not which;
    `backend.record` says where)."""
    return {k: v for k, v in checkpoint.to_json(config).items() if k not in ("out", *backend.WHERE_OPTIONS)}


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
    """The lines of every chunk: those kept already, then `compute(chunk, compiling)` for
    the rest (this process's share of them), one line per item (`identify(line)` gives its
    item). `compiling` is true for the first chunk this process computes, whose time may
    include compiling (speed figures leave it out). The folder is this command's while it
    runs (`locked`)."""
    with holding(path.parent):
        kept, compute = _kept(path, chunks, identify), _checked(compute, desc)
        with stops_as_interrupt() as stop:
            try:
                if jax.process_count() == 1:
                    return _in_order(path, chunks, compute, kept, stop, desc, postfix)
                return _shared(path, chunks, compute, kept, stop, desc, postfix, identify)
            except KeyboardInterrupt:
                # XLA does not cancel a computation it has started, and Python's exit waits for it
                # (minutes for a large chunk). Leaving the block puts the previous handlers back, so
                # a second SIGTERM ends the process at once; that chunk would be dropped anyway.
                print(f"\ninterrupted: the whole chunks so far are in {path} (or, with several "
                      f"processes, {_process_file(path, '*').name} beside it); the same command "
                      "continues from them. The computation already running finishes before the "
                      "process exits; a second kill (SIGTERM) ends it at once", file=sys.stderr)
                raise SystemExit(130) from None


def _checked(compute, desc: str):
    """`compute`, refusing a chunk's lines that are not one per item."""
    def checked(chunk, compiling: bool) -> list[dict]:
        lines = compute(chunk, compiling)
        if len(lines) != len(chunk):
            raise RuntimeError(f"{desc}: {len(lines)} lines for a chunk of {len(chunk)}")
        return lines
    return checked


def _process_file(path: Path, process: int | str) -> Path:
    """Where process `process` keeps its chunks until process 0 merges them into `path`."""
    return path.with_name(f"{path.stem}.process{process}{path.suffix}")


def _kept(path: Path, chunks, identify) -> dict[int, list[dict]]:
    """The lines of the whole chunks kept by earlier runs, by chunk number: those at the
    start of `path`, in order, and those of the processes' files (a line {"chunk", "records"}
    per chunk). Lines that are not the chunks' items are refused, naming the file."""
    boundaries = np.cumsum([0, *(len(chunk) for chunk in chunks)])
    records = read_lines(path)
    done = int(np.searchsorted(boundaries, len(records), side="right")) - 1
    _check_kept(path, records[: boundaries[done]], [item for chunk in chunks for item in chunk], identify)
    kept = {n: records[boundaries[n]:boundaries[n + 1]] for n in range(done)}
    for file in sorted(path.parent.glob(_process_file(path, "*").name)):
        try:
            lines = read_lines(file)
        except FileNotFoundError:  # merged and removed by process 0 meanwhile: `path` has them
            continue
        for line in lines:
            number = line["chunk"]
            if not 0 <= number < len(chunks) or [identify(r) for r in line["records"]] != list(chunks[number]):
                raise checkpoint.CheckpointError(
                    f"{file}: its chunk {number} is not this command's; move the file away (or use "
                    "another --out) and run again")
            kept.setdefault(number, line["records"])
    return kept


def _in_order(path, chunks, compute, kept, stop, desc, postfix) -> list[dict]:
    """One process: every chunk in order, appended to `path` as it comes (those kept in the
    processes' files too, which are then removed)."""
    done = next(n for n in range(len(chunks) + 1) if n not in kept)
    records = [line for n in range(done) for line in kept[n]]
    write_lines(path, records)  # without a line that a kill cut short
    compiling = True
    bar = progress(total=sum(map(len, chunks)), initial=len(records), desc=desc, unit="image")
    with contextlib.closing(bar):  # closed however the loop ends, before its message
        for number in range(done, len(chunks)):
            stop.check()
            if number in kept:
                lines = kept[number]
            else:
                lines, compiling = compute(chunks[number], compiling), False
            append_lines(path, lines)
            records += lines
            if postfix is not None:  # before the update, which may print it
                bar.set_postfix(postfix(records), refresh=False)
            bar.update(len(lines))
    for file in path.parent.glob(_process_file(path, "*").name):
        file.unlink()
    return records


POLL_SECONDS = 1.0


def _shared(path, chunks, compute, kept, stop, desc, postfix, identify) -> list[dict]:
    """One of several processes: its own chunks not kept yet, each appended to its own file as
    it comes; then, once every process's are kept, all in order (process 0 writes them to
    `path`). Each process's share is fixed by the chunk numbers, not by what the others
    have kept, so that the processes need not agree on anything."""
    me, count = jax.process_index(), jax.process_count()
    mine = [n for n in range(me, len(chunks), count) if n not in kept]
    file = _process_file(path, me)
    if mine and file.exists():
        write_lines(file, read_lines(file))  # a line a kill cut short would hide those after it
    records = []
    bar = progress(total=sum(len(chunks[n]) for n in mine), desc=f"{desc} (process {me} of {count})", unit="image")
    with contextlib.closing(bar):
        for i, number in enumerate(mine):
            stop.check()
            kept[number] = lines = compute(chunks[number], i == 0)
            append_lines(file, [{"chunk": number, "records": lines}])
            records += lines
            if postfix is not None:
                bar.set_postfix(postfix(records), refresh=False)
            bar.update(len(lines))
    while len(kept) < len(chunks):  # the other processes' chunks
        stop.check()
        time.sleep(POLL_SECONDS)
        kept = _kept(path, chunks, identify)
    records = [line for n in range(len(chunks)) for line in kept[n]]
    if me == 0:
        write_lines(path, records)
        for other in path.parent.glob(_process_file(path, "*").name):
            other.unlink()
    wait_for_the_others("experiments.results: the records are merged")
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
    if writes_files():  # every process has the same summary
        write_json(folder / f"{name}.json", summary)
        write_text(folder / f"{name}.md", markdown)
