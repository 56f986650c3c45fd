"""Matplotlib for files only (no display), and figures saved atomically as PNG."""

import io
from pathlib import Path

import matplotlib

from experiments.files import write_atomically

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402  (after choosing the file-only backend)

__all__ = ["pyplot", "save_png"]


def save_png(path: Path, figure, dpi: int = 100) -> None:
    """Write `figure` to `path` as PNG and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot.close(figure)
    write_atomically(path, lambda file: file.write(buffer.getvalue()))
