"""Packages that only some outputs need, imported where they are used.

Training and every table run with jax, equinox, diffrax, optax and numpy
alone, on the local-folder data (IDX files, CIFAR-10's python batches): a bare
accelerator image has no more. Reading parquet files or the hub needs
`datasets`; pictures need Pillow (sample grids, two corruptions) and
matplotlib (plots); progress bars in a terminal use tqdm when it is there.
"""

import functools
import importlib
import sys
from collections.abc import Callable
from types import ModuleType

# The pip name of each optional top-level module.
PACKAGES = {"datasets": "datasets", "huggingface_hub": "huggingface_hub", "PIL": "pillow",
            "matplotlib": "matplotlib", "sklearn": "scikit-learn", "tqdm": "tqdm"}


class MissingPackageError(ImportError):
    """An optional package that this use needs is not installed; the message says which."""


def load(module: str, purpose: str) -> ModuleType:
    """`importlib.import_module(module)`, or a `MissingPackageError` naming the package to
    install and what it is for (`purpose`: "plots", "the digits data set", ...)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        raise MissingPackageError(f"the {top} module is needed for {purpose}: pip install "
                                  f"{PACKAGES.get(top, top)}", name=top) from error


def picture(loader: Callable[[], ModuleType]):
    """Decorator for a function `draw(module, *args)` that writes a picture with the module
    `loader()` returns: called as `draw(*args)`. Without the package it says so on stderr
    and writes nothing: a picture is never the only record of a result."""

    def decorator(draw):
        @functools.wraps(draw)
        def drawn(*args, **kwargs):
            try:
                module = loader()
            except MissingPackageError as error:
                print(f"{draw.__module__}.{draw.__name__}: nothing drawn, {error}", file=sys.stderr)
                return None
            return draw(module, *args, **kwargs)

        return drawn

    return decorator
