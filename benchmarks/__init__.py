"""Benchmarks: `python -m benchmarks.NAME` from the repository root (benchmarks/README.md).

Importing `experiments` first gives a benchmark the XLA host devices an entry point
gets (one per core, experiments/__init__.py), so that sharded work is timed as it runs.
"""

import experiments  # noqa: F401
