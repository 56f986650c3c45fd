"""Several processes (`experiments.distributed`): training equal bit for bit to one process
with as many devices, evaluation split by chunks and merged, resumable with any process count."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from experiments import checkpoint, results, table1
from experiments.files import read_lines, write_lines
from experiments.results import chunked, run_chunks
from tests.conftest import CACHE_VARIABLE, TINY_TRAINING

ROOT = Path(__file__).parents[1]
# No sample grids: their solve compiles for long and only process 0 draws them.
TRAINING = [*TINY_TRAINING, "--steps", "4", "--samples-per-class", "0"]
# Two chunks, one per process. The ELBO compiles in a third of the ODE solve's time, and the
# chunks are split and merged alike.
CLASSIFYING = ["--limit", "4", "--images-per-solve", "2", "--estimator", "elbo", "--elbo-samples", "8"]

PROCESS = """
import sys
from experiments import table1, train
from tests.test_distributed import CLASSIFYING, TRAINING
out, coordinator, process = sys.argv[1:]
join = ["--coordinator", coordinator, "--num-processes", "2", "--process-id", process]
train.main([*TRAINING, "--out", f"{out}/run", *join])
table1.main(["--run", f"{out}/run", "--out", f"{out}/table1", *CLASSIFYING, *join])
"""
ONE_PROCESS = """
import sys
from experiments import train
from tests.test_distributed import TRAINING
train.main([*TRAINING, "--out", sys.argv[1]])
"""


def environment(devices: int) -> dict:
    """This one's, with `devices` CPU devices and the test run's compilation cache."""
    chosen = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    return {**chosen, "JAX_NUM_CPU_DEVICES": str(devices), "SBGC_COMPILATION_CACHE": os.environ[CACHE_VARIABLE]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory):
    """A tiny run and its table1 by 2 processes of 1 CPU device each, and the run by 1
    process of 2 devices: all three processes at once."""
    two, one = tmp_path_factory.mktemp("two_processes"), tmp_path_factory.mktemp("one_process")
    coordinator = f"127.0.0.1:{free_port()}"
    commands = [([PROCESS, str(two), coordinator, str(i)], environment(1), two / f"process{i}.log") for i in (0, 1)]
    commands.append(([ONE_PROCESS, str(one / "run")], environment(2), one / "process.log"))
    started = [(subprocess.Popen([sys.executable, "-c", *argv], env=env, cwd=ROOT, stdout=log.open("w"),
                                 stderr=subprocess.STDOUT), log) for argv, env, log in commands]
    for process, log in started:
        assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
    return two, one


def test_two_processes_train_as_one_process_with_two_devices(two_and_one):
    two, one = two_and_one
    assert (two / "run" / "checkpoint.eqx").read_bytes() == (one / "run" / "checkpoint.eqx").read_bytes()
    losses = lambda folder: [line["loss"] for line in read_lines(folder / "run" / "log.jsonl")]
    assert losses(two) == losses(one) and len(losses(two)) == 2  # written once, by process 0
    assert checkpoint.load_config(two / "run")["backend"]["processes"] == 2


def test_two_processes_classify_as_one(two_and_one, tmp_path):
    two, _ = two_and_one
    table1.main(["--run", str(two / "run"), "--out", str(tmp_path), *CLASSIFYING])
    timing = ("seconds", "compiling")
    records = lambda folder: [{k: v for k, v in r.items() if k not in timing}
                              for r in read_lines(folder / "images.jsonl")]
    assert records(two / "table1") == records(tmp_path) and len(records(tmp_path)) == 4
    assert sorted(p.name for p in (two / "table1").iterdir()) == [
        ".lock", "config.json", "images.jsonl", "table1.json", "table1.md"]  # the processes' files merged
    assert json.loads((two / "table1" / "table1.json").read_text())["num_images"] == 4


def compute(chunk, compiling):
    return [{"index": i, "compiling": compiling} for i in chunk]


def as_process(monkeypatch, index: int, count: int) -> None:
    """Be process `index` of `count` (whose others are not there to wait for)."""
    monkeypatch.setattr(jax, "process_index", lambda: index)
    monkeypatch.setattr(jax, "process_count", lambda: count)
    monkeypatch.setattr(results, "wait_for_the_others", lambda name: None)


def test_process_one_of_two_computes_its_share_and_process_zero_merges(tmp_path, monkeypatch):
    path, chunks, computed = tmp_path / "images.jsonl", chunked(range(8), 2), []
    counted = lambda chunk, compiling: computed.append(list(chunk)) or compute(chunk, compiling)
    # Process 0's chunks 0 and 2 are kept; chunk 3 waits for process 1, which computes it (and 1).
    write_lines(tmp_path / "images.process0.jsonl", [{"chunk": n, "records": compute(chunks[n], False)}
                                                     for n in (0, 2)])
    as_process(monkeypatch, 1, 2)
    records = run_chunks(path, chunks, counted, desc="test")
    assert computed == [[2, 3], [6, 7]] and [r["index"] for r in records] == list(range(8))
    assert not path.exists()  # process 0 writes it
    as_process(monkeypatch, 0, 2)
    assert run_chunks(path, chunks, counted, desc="test") == records and len(computed) == 2
    assert read_lines(path) == records and [p.name for p in tmp_path.glob("images.*")] == ["images.jsonl"]


def test_one_process_continues_the_chunks_of_several(tmp_path):
    """A two-process run stopped with chunks 0 and 2 kept (process 1 killed mid-line): one
    process computes only chunks 1 and 3, and merges the rest in."""
    path, chunks, computed = tmp_path / "images.jsonl", chunked(range(8), 2), []
    write_lines(tmp_path / "images.process0.jsonl", [{"chunk": n, "records": compute(chunks[n], n == 0)}
                                                     for n in (0, 2)])
    (tmp_path / "images.process1.jsonl").write_text('{"chunk": 1, "rec')
    records = run_chunks(path, chunks, lambda c, first: computed.append(list(c)) or compute(c, first), desc="test")
    assert computed == [[2, 3], [6, 7]] and [r["index"] for r in records] == list(range(8))
    assert [r["compiling"] for r in records[2:4]] == [True, True]  # the first chunk this process computed
    assert read_lines(path) == records and [p.name for p in tmp_path.glob("images.*")] == ["images.jsonl"]


def test_kept_chunks_of_another_command_are_refused(tmp_path):
    write_lines(tmp_path / "images.process1.jsonl", [{"chunk": 1, "records": compute([5, 6], False)}])
    with pytest.raises(checkpoint.CheckpointError, match=r"images\.process1\.jsonl: its chunk 1 is not this"):
        run_chunks(tmp_path / "images.jsonl", chunked(range(4), 2), compute, desc="test")
