"""One process per results or run folder, and kept records that must be the expected chunks."""

import subprocess
import sys

import pytest

from experiments import checkpoint
from experiments.files import FolderInUse, locked, write_lines
from experiments.results import chunked, run_chunks


def compute(chunk, compiling):
    return [{"index": i} for i in chunk]


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path):
    with locked(tmp_path):
        with pytest.raises(FolderInUse, match=r"is in use by process \d+: one process at a time"):
            run_chunks(tmp_path / "images.jsonl", chunked(range(4), 2), compute, desc="test")
    assert run_chunks(tmp_path / "images.jsonl", chunked(range(4), 2), compute, desc="test") == compute(range(4), 0)


def test_a_killed_holder_leaves_nothing_held(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time; from pathlib import Path; from experiments.files import locked\n"
        f"with locked(Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderInUse):
        with locked(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with locked(tmp_path):  # the kernel released the dead process's lock
        pass


def test_kept_records_of_other_chunks_are_refused_by_name(tmp_path):
    """Two processes that once wrote one folder: chunks 0, 0, 1, 1 instead of 0, 1."""
    path = tmp_path / "images.jsonl"
    write_lines(path, [{"index": i} for i in (0, 1, 0, 1)])
    with pytest.raises(checkpoint.CheckpointError, match=r"line 3 holds 0 where 2 was expected"):
        run_chunks(path, chunked(range(4), 2), compute, desc="test")
    assert len(path.read_text().splitlines()) == 4  # left as it was
