"""Shared test settings: hypothesis examples are few because each new shape recompiles, and
one compilation cache serves the whole run."""

import contextlib
import os
import shutil
import signal
import tempfile

import jax
import pytest
from hypothesis import settings

settings.register_profile("sbgc", max_examples=8, deadline=None, derandomize=True)
settings.load_profile("sbgc")

CACHE_VARIABLE = "SBGC_TEST_COMPILATION_CACHE"


def pytest_configure(config):
    """One persistent compilation cache per test run, shared by pytest-xdist's workers (they
    inherit the variable from the controller) and removed at its end. Tests build fresh jitted
    functions over same-shaped tiny models, and most of the suite's time is compiling: an
    identical program (the same HLO) then compiles once per run, not once per test and worker."""
    if CACHE_VARIABLE not in os.environ:  # the controller, or a run without xdist
        directory = tempfile.mkdtemp(prefix="sbgc-test-compilation-cache-")
        os.environ[CACHE_VARIABLE] = directory
        config.add_cleanup(lambda: (shutil.rmtree(directory, ignore_errors=True), os.environ.pop(CACHE_VARIABLE)))
    jax.config.update("jax_compilation_cache_dir", os.environ[CACHE_VARIABLE])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# A constant learning rate after one warm-up step: the schedule of a run stopped
# at N/2 is then the one of the whole run, as resuming assumes.
TINY_TRAINING = ["--preset", "digits", "--nf", "8", "--ch-mult", "1", "--batch-size", "16", "--log-every", "2",
                 "--samples-per-class", "1", "--lr-schedule", "constant", "--warmup-steps", "1",
                 "--checkpoint-every", "2"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A digits run of 4 tiny steps, shared by the entry points' tests."""
    from experiments import train

    out = tmp_path_factory.mktemp("tiny_run")
    train.main([*TINY_TRAINING, "--out", str(out), "--steps", "4"])
    return out


class SignalNotHandled(Exception):
    """Stands in for SIGTERM's default, ending the process, which would end pytest too."""


def not_handled(signum, frame):
    raise SignalNotHandled(signum)


@contextlib.contextmanager
def signal_handled_by(signum: int | None, handler):
    """Within the block, `handler` handles `signum` (nothing changes for None); the block
    must leave it so (the code under test restores what it found); the old one comes back."""
    if signum is None:
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
        assert signal.getsignal(signum) is handler, "the code under test left its handler behind"
    finally:
        signal.signal(signum, previous)


def ctrl_c() -> None:
    raise KeyboardInterrupt


def counting(fn, calls: list, interrupt_at: int | None = None, interrupt=ctrl_c):
    """`fn`, appending to `calls` at every call, and calling `interrupt` (by default
    Ctrl-C in a terminal) instead of `fn` at call number `interrupt_at`."""

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == interrupt_at:
            interrupt()
        return fn(*args, **kwargs)

    return wrapped


def interrupted_then_resumed(monkeypatch, module, name: str, run, interrupt_at: int, between=None):
    """Ctrl-C at call `interrupt_at` of `module.name` during `run()` (which must exit with
    130), `between()` if given, then `run()` again: its result and how many calls it made."""
    real, calls = getattr(module, name), []
    monkeypatch.setattr(module, name, counting(real, calls, interrupt_at))
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 130
    if between is not None:
        between()
    calls.clear()
    monkeypatch.setattr(module, name, counting(real, calls))
    return run(), len(calls)


@pytest.fixture(scope="session")
def wrn_digits_run(tmp_path_factory):
    """A digits WideResNet run (`--model wrn`) of 100 steps: far above chance, in seconds."""
    from experiments import train

    out = tmp_path_factory.mktemp("wrn_digits_run")
    train.main(["--preset", "digits", "--model", "wrn", "--steps", "100", "--out", str(out)])
    return out


def assert_replotted(folder, name: str) -> None:
    """`python -m experiments.replot` draws the picture `name` of a results folder from its
    saved files as the entry point drew it, byte for byte."""
    from experiments import replot

    drawn = (folder / name).read_bytes()
    (folder / name).unlink()
    assert replot.main(["--folders", str(folder)]) == [folder / name]
    assert (folder / name).read_bytes() == drawn
