"""Stopping a long loop: SIGTERM and SIGINT both mean Ctrl-C.

A loop that saves its work on KeyboardInterrupt (training's checkpoint, a
table's finished chunks) should save it however it is asked to stop. Two
asks miss it by default: SIGTERM (`kill`, a job scheduler, a container's
stop) ends Python at once, and a job started in the background by a
non-interactive shell (`nohup python ... &`) inherits SIGINT ignored, so
Ctrl-C sent with `kill -INT` does nothing.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


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
