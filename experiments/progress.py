"""Progress of long work: a bar in a terminal, a plain line every half minute in a log.

A job started as `nohup python -m experiments.NAME ... > log &` has no
terminal, where a bar would redraw one line with carriage returns (or, as
tqdm does without a TTY by default, show nothing); there each update that
tqdm lets through becomes its own line.
"""

import sys

LOG_INTERVAL_SECONDS = 30.0


class _Lines:
    """A stream for tqdm that writes each redraw as one line of stderr."""

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            print(text, file=sys.stderr, flush=True)

    def flush(self) -> None:
        sys.stderr.flush()


def progress(iterable=None, **options):
    """`tqdm(iterable, **options)` on a terminal; on anything else, a line every
    `LOG_INTERVAL_SECONDS` (and at the end)."""
    from tqdm import tqdm  # imported here: only progress bars need it

    if sys.stderr.isatty():
        return tqdm(iterable, dynamic_ncols=True, **options)
    return tqdm(iterable, file=_Lines(), mininterval=LOG_INTERVAL_SECONDS, maxinterval=LOG_INTERVAL_SECONDS,
                ncols=100, ascii=True, **options)
