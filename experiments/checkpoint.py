"""Run folders: atomic checkpoints with `eqx.tree_serialise_leaves` and a JSON config.

A run folder holds `config.json` (every setting of the run, written once),
`checkpoint.eqx` (the training state's leaves) and whatever the entry point
adds; an exported one (`experiments.export`) holds `model.eqx`, the evaluated
model and its step, instead of the checkpoint. Files are written atomically
(`experiments.files`), so an interrupted write never leaves a half-written
checkpoint behind. Training saves in the background (`BackgroundSaver`).
"""

import concurrent.futures
import dataclasses
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from experiments.files import write_atomically

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.eqx"
MODEL_FILE = "model.eqx"  # experiments.export: the evaluated model alone
KEPT_CHECKPOINTS = "checkpoints"  # experiments.train --keep-checkpoints


class CheckpointError(RuntimeError):
    """A checkpoint or run folder that cannot be used; the message names the file."""


def to_json(config: Any) -> dict:
    """A (nested) frozen dataclass as JSON-ready data; tuples and paths as lists and strings."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def save_config(folder: Path, config: dict) -> None:
    text = json.dumps(config, indent=2, sort_keys=True).encode()
    write_atomically(folder / CONFIG_FILE, lambda file: file.write(text))


def load_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; is {folder} a run folder of experiments.train?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from error


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_config(folder: Path, expected: dict, ignore: tuple[str, ...]) -> None:
    """Raise if the run's saved config differs from `expected`, except for the keys in
    `ignore` (dotted paths such as "train.steps")."""
    saved, now = _flatten(load_config(folder)), _flatten(expected)
    keys = sorted((set(saved) | set(now)) - set(ignore))
    differences = [f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in keys
                   if saved.get(k) != now.get(k)]
    if differences:
        raise CheckpointError(
            f"{folder / CONFIG_FILE} does not match this run's settings ("
            + "; ".join(differences) + "); resume with the same settings or use a new --out"
        )


# A checkpoint ends with the SHA-256 of what precedes it, so that a damaged file is named as
# such before anything is deserialised from it. Files from before the checksum have none:
# they are read as before (a truncated one still fails to deserialise).
_CHECKSUM = b"\nsha256:"
_TRAILER = len(_CHECKSUM) + 64


def serialised(state: eqx.Module) -> bytes:
    """A checkpoint file's contents: the leaves of `state` (arrays on a device or the host:
    the same bytes), then their checksum."""
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, state)
    data = buffer.getvalue()
    return data + _CHECKSUM + hashlib.sha256(data).hexdigest().encode()


def write_checkpoint(folder: Path, data: bytes, name: str = CHECKPOINT_FILE) -> None:
    """Write `serialised(state)` as `folder/name`."""
    write_atomically(folder / name, lambda file: file.write(data))


def host_copy(state: eqx.Module) -> eqx.Module:
    """`state` as numpy arrays that own their memory. On CPU, `jax.device_get` returns views
    of the device buffers, and JAX silently does not donate a buffer that has one: the next
    training step would then copy the whole state instead of updating it in place."""
    return jax.tree.map(np.array, jax.device_get(state))


class BackgroundSaver:
    """Checkpoints written by a worker thread while training goes on, at most one at a time.

    `save(state, write)` waits for the save in flight, copies `state` to the host at once
    (the next step donates its buffers), and calls `write(copy)` in the worker. Whatever
    waits for a save (the next one, `wait()`, leaving the `with` block however it is left)
    raises the error that a failed one raised.
    """

    def __init__(self) -> None:
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._in_flight: concurrent.futures.Future | None = None

    def save(self, state: eqx.Module, write: Callable[[eqx.Module], None]) -> None:
        self.wait()
        self._in_flight = self._worker.submit(write, host_copy(state))

    def wait(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def __enter__(self) -> "BackgroundSaver":
        return self

    def __exit__(self, *exception) -> None:
        try:
            self.wait()
        finally:
            self._worker.shutdown()


def load_state(folder: Path, like: eqx.Module, name: str = CHECKPOINT_FILE) -> eqx.Module:
    """The state saved in `folder` (as `name`), with the structure of `like` (arrays or shape
    structs)."""
    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    data = path.read_bytes()
    if data[-_TRAILER:-64] == _CHECKSUM:
        data, digest = data[:-_TRAILER], data[-64:]
        if hashlib.sha256(data).hexdigest().encode() != digest:
            raise CheckpointError(f"{path}: corrupted (its SHA-256 checksum does not match its "
                                  "contents); resume from another copy or start a new --out")
    file = io.BytesIO(data)
    try:
        state = eqx.tree_deserialise_leaves(file, like)
    except Exception as error:
        if any(np.dtype(getattr(leaf, "dtype", np.float32)) == np.float64 for leaf in jax.tree.leaves(like)):
            why = ("this process expects float64 arrays (jax_enable_x64 is on), and runs are saved in "
                   "float32: load it with x64 off (JAX_ENABLE_X64=0)")
        else:
            why = "truncated or written for another model/optimiser"
        raise CheckpointError(f"{path}: {why} ({type(error).__name__}: {error})") from error
    if file.read(1):
        raise CheckpointError(f"{path}: longer than this model's state: written for another model")
    return state


def kept_name(step: int) -> str:
    return f"{KEPT_CHECKPOINTS}/step_{step:07d}.eqx"


def kept_checkpoints(folder: Path) -> list[tuple[int, str]]:
    """(step, name) of every checkpoint that `--keep-checkpoints` kept in `folder`, by step."""
    names = sorted((folder / KEPT_CHECKPOINTS).glob("step_*.eqx"))
    return [(int(path.stem.removeprefix("step_")), f"{KEPT_CHECKPOINTS}/{path.name}") for path in names]


def retained(steps: list[int], keep_last: int, keep_every: int) -> list[int]:
    """The kept steps that `--keep-last` and `--keep-every` leave (as orbax's max_to_keep and
    keep_period): the last `keep_last` (0: all), and every multiple of `keep_every` (0: none)."""
    if keep_last == 0:
        return steps
    return [step for i, step in enumerate(steps)
            if i >= len(steps) - keep_last or (keep_every and step % keep_every == 0)]


def drop_kept(folder: Path, keep_last: int, keep_every: int) -> None:
    """Delete the kept checkpoints of `folder` that `retained` leaves out."""
    kept = kept_checkpoints(folder)
    left = set(retained([step for step, _ in kept], keep_last, keep_every))
    for step, name in kept:
        if step not in left:
            (folder / name).unlink(missing_ok=True)
