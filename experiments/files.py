"""Files that an interruption never leaves half-written, and JSON lines that survive one.

Every results, log and checkpoint file of the entry points goes through
`write_atomically`: written to a temporary name beside its place, then
renamed onto it, so a reader sees the old file or the new one, never part.
`locked` keeps a folder to one writing process at a time.
"""

import contextlib
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

LOCK_FILE = ".lock"


class FolderInUse(RuntimeError):
    """Another process holds the run or results folder."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it onto `path`.

    The file gets the mode any new file would (0666 less the umask): mkstemp's
    private 0600 would leave a run written by one user unreadable to the others.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())
        with os.fdopen(descriptor, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda file: file.write(text.encode()))


def write_json(path: Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomically(path, lambda file: file.write(buffer.getvalue()))


def read_lines(path: Path) -> list[dict]:
    """The complete JSON lines of `path` (none if it does not exist). A kill can cut the
    last line of an appended file short: that line, and anything after it, is dropped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def write_lines(path: Path, records: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def append_lines(path: Path, records: list[dict]) -> None:
    """Append in one write, so that a kill loses whole lines or the last line's tail."""
    with path.open("a") as file:
        file.write("".join(json.dumps(r) + "\n" for r in records))


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold `folder` for this process alone: a second process is refused at once, naming the
    holder. The lock is the kernel's (flock on `folder/.lock`), so a process that dies,
    however it dies, leaves nothing held."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            raise FolderInUse(
                f"{folder} is in use by {holder}: one process at a time may write a run or results "
                "folder; wait for it to end, or use another --out") from None
        file.truncate(0)
        file.write(f"process {os.getpid()}\n")
        file.flush()
        try:
            yield
        finally:
            file.truncate(0)
            fcntl.flock(file, fcntl.LOCK_UN)
