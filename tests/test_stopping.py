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
