"""Progress of long work: a bar in a terminal, a plain line every half minute in a log.

A job started as `nohup python -m experiments.NAME ... > log &` has no
terminal, where a bar would redraw one line with carriage returns (or, as
tqdm does without a TTY by default, show nothing); there, and wherever tqdm
is not installed, `Lines` prints its own line at most every half minute and
at the end.
"""

import sys
import time

LOG_INTERVAL_SECONDS = 30.0


class Lines:
    """The part of tqdm's interface the entry points use (iteration, `update`,
    `set_postfix`, `close`), as a line of stderr at most every `interval` seconds."""

    def __init__(self, iterable=None, *, total: int | None = None, initial: int = 0, desc: str = "",
                 unit: str = "it", interval: float = LOG_INTERVAL_SECONDS):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit, self.interval = iterable, total, desc, unit, interval
        self.count = self.initial = initial
        self.postfix, self.closed, self.printed_count = "", False, None
        self.start = self.printed = time.perf_counter()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.count += n
        if time.perf_counter() - self.printed >= self.interval:
            self._print()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **values) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in {**(ordered_dict or {}), **values}.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.count != self.printed_count:  # not the line just printed again
                self._print()

    def _print(self) -> None:
        self.printed, self.printed_count = time.perf_counter(), self.count
        done = self.count - self.initial
        rate = done / max(self.printed - self.start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        fields = [f"{self.desc}: {self.count}{of} {self.unit}", f"{rate:.3g} {self.unit}/s", self.postfix]
        print(", ".join(field for field in fields if field), file=sys.stderr, flush=True)


def progress(iterable=None, **options):
    """`tqdm(iterable, **options)` on a terminal where tqdm is installed; else `Lines`."""
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm  # imported here: only bars in a terminal need it
        except ImportError:
            pass
        else:
            return tqdm(iterable, dynamic_ncols=True, **options)
    return Lines(iterable, **options)
