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

An exception raised by a signal handler is lost when the signal arrives
while Python runs a garbage-collection callback or a `__del__` (it prints
"Exception ignored in ..." and goes on; JAX registers such a callback): so
the start-up handler ends the process itself, and a loop's handler also
leaves a note that the loop checks at every step (`Stop.check`).
"""

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator


class Stop:
    """The stop a loop was asked for, if any: `check()` raises it as KeyboardInterrupt even
    where the handler's own exception was lost."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def check(self) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt(self.signal)

    def handler(self, signum: int, frame: object) -> None:
        self.signal = signal.Signals(signum).name
        raise KeyboardInterrupt(self.signal)


def _exit(signum: int, frame: object) -> None:
    print(f"\n{signal.Signals(signum).name} while starting: stopped before any work began, nothing "
          "to save; the same command starts again", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(130)  # not SystemExit, which a garbage-collection callback would swallow


def exit_on_stop() -> None:
    """From now on until a loop takes over (`stops_as_interrupt`), SIGTERM and SIGINT end the
    process with status 130, even in a background job that started with SIGINT ignored."""
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, _exit)


@contextlib.contextmanager
def stops_as_interrupt() -> Iterator[Stop]:
    """Within the block, SIGTERM and SIGINT raise KeyboardInterrupt, and the `Stop` it yields
    raises it again at the loop's next `check()`; the previous handlers come back after it.
    Outside the main thread (where Python cannot set handlers) nothing changes."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop.handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
