"""Stopping a long loop: SIGTERM and SIGINT both mean Ctrl-C.

A loop that saves its work on KeyboardInterrupt (training's checkpoint, a
table's finished chunks) should save it however it is asked to stop. Two
asks miss it by default: SIGTERM (`kill`, a job scheduler, a container's
stop) ends Python at once, and a job started in the background by a
non-interactive shell (`nohup python ... &`) inherits SIGINT ignored, so
Ctrl-C sent with `kill -INT` does nothing.

Before a loop begins (imports, loading data, the first compilations: minutes
on a busy machine) there is nothing to save, and a stop should simply end
the process: `exit_on_stop`, which `experiments/__init__.py` installs when an
entry point starts, does that with status 130 and one line, not a traceback.
"""

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _exit(signum: int, frame: object) -> None:
    print(f"\n{signal.Signals(signum).name} while starting: stopped before any work began, nothing "
          "to save; the same command starts again", file=sys.stderr)
    raise SystemExit(130)


def exit_on_stop() -> None:
    """From now on until a loop takes over (`stops_as_interrupt`), SIGTERM and SIGINT end the
    process with status 130, even in a background job that started with SIGINT ignored."""
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, _exit)


@contextlib.contextmanager
def stops_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise KeyboardInterrupt; the previous handlers
    come back after it. Outside the main thread (where Python cannot set handlers) nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
