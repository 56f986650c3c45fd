"""Matplotlib for files only (no display), imported when a figure is drawn, and figures saved
atomically as PNG."""

import importlib
import io
from pathlib import Path
from types import ModuleType

from experiments.files import write_atomically
from experiments.optional import load, picture

__all__ = ["drawing", "pyplot", "save_png"]


def pyplot() -> ModuleType:
    """`matplotlib.pyplot` on the file-only backend (chosen before pyplot is imported)."""
    load("matplotlib", "plots").use("Agg")
    return importlib.import_module("matplotlib.pyplot")


# Decorates `draw(plt, *args)`, called as `draw(*args)`: without matplotlib it draws nothing.
drawing = picture(pyplot)


def save_png(path: Path, figure, dpi: int = 100) -> None:
    """Write `figure` to `path` as PNG and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(figure)
    write_atomically(path, lambda file: file.write(buffer.getvalue()))
