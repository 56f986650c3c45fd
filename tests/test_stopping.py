"""SIGTERM stops a results loop as Ctrl-C does: finished chunks kept, the rest computed on rerun."""

import os
import signal

import pytest

from experiments.files import read_lines
from experiments.results import chunked, run_chunks
from tests.conftest import not_handled, signal_handled_by


def test_sigterm_keeps_finished_chunks(tmp_path):
    path, computed, stop_at = tmp_path / "images.jsonl", [], [3]

    def compute(chunk, compiling):
        if chunk[0] in stop_at:  # the second chunk, once
            stop_at.clear()
            os.kill(os.getpid(), signal.SIGTERM)
        computed.extend(chunk)
        return [{"index": i} for i in chunk]

    chunks = chunked(range(7), 3)
    with signal_handled_by(signal.SIGTERM, not_handled), pytest.raises(SystemExit) as exit_info:
        run_chunks(path, chunks, compute, desc="test")
    assert exit_info.value.code == 130
    assert read_lines(path) == [{"index": i} for i in range(3)]
    computed.clear()
    assert run_chunks(path, chunks, compute, desc="test") == [{"index": i} for i in range(7)]
    assert computed == [3, 4, 5, 6]


def test_a_stop_whose_exception_was_lost_still_stops_the_loop(tmp_path):
    """A signal that arrives during a garbage-collection callback: Python prints its
    KeyboardInterrupt as "Exception ignored" and goes on; the loop's next check stops."""
    path, computed = tmp_path / "images.jsonl", []

    def compute(chunk, compiling):
        if chunk[0] == 3:
            try:  # the handler runs where its exception goes nowhere
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            except KeyboardInterrupt:
                pass
        computed.extend(chunk)
        return [{"index": i} for i in chunk]

    with signal_handled_by(signal.SIGTERM, not_handled), pytest.raises(SystemExit) as exit_info:
        run_chunks(path, chunked(range(9), 3), compute, desc="test")
    assert exit_info.value.code == 130
    assert computed == [0, 1, 2, 3, 4, 5]  # the chunk under way finished, and nothing more
    assert read_lines(path) == [{"index": i} for i in range(6)]


def test_a_stop_during_start_up_ends_even_a_job_started_with_sigint_ignored(tmp_path):
    """`nohup ... &` starts a job with SIGINT ignored; `kill -INT` while it imports, loads data
    or compiles (before any loop) must still end it, with status 130 and one line."""
    import subprocess
    import sys
    import time

    # As a non-interactive shell starts a background job: SIGINT ignored, then exec.
    command = (f"trap '' INT; exec {sys.executable} -m experiments.train --preset digits "
               f"--out {tmp_path / 'run'} --steps 2")
    job = subprocess.Popen(["sh", "-c", command], stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # experiments/__init__.py has run (at once), the first step is seconds away
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr
    assert "SIGINT while starting: stopped before any work began" in stderr
    assert "Traceback" not in stderr


def test_written_files_get_the_mode_of_new_files(tmp_path):
    from experiments.files import write_text

    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
