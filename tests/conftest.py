"""Shared test settings: hypothesis examples are few because each new shape recompiles."""

from hypothesis import settings

settings.register_profile("sbgc", max_examples=8, deadline=None, derandomize=True)
settings.load_profile("sbgc")


import contextlib  # noqa: E402
import signal  # noqa: E402

import pytest  # noqa: E402

# A constant learning rate after one warm-up step: the schedule of a run stopped
# at N/2 is then the one of the whole run, as resuming assumes.
TINY_TRAINING = ["--preset", "digits", "--batch-size", "16", "--log-every", "2",
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
