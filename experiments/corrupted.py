"""The corrupted test split of Table 2: computed on the fly, or CIFAR-10-C's files.

For every preset the corrupted images are computed from the test split with
`experiments.corruptions` (so `digits-C` and `fashion-mnist-C` need no
files); test image j is corrupted with the generator of (seed, corruption,
severity, j), so it gets the same corruption whatever subset or chunk it is
evaluated in. For CIFAR-10 the official CIFAR-10-C folder can be read
instead (docs/method.md §6): `labels.npy` and one `<corruption>.npy` of shape
(50,000, 32, 32, 3) uint8 per corruption, rows [(s - 1) 10,000, s 10,000)
holding severity s of the test images in their order.
"""

from pathlib import Path

import numpy as np
from jaxtyping import Int64, UInt8

from experiments.corruptions import corrupt
from experiments.data import Split

def corrupted_images(
    test: Split,
    indices: Int64[np.ndarray, " n"],
    name: str,
    severity: int,
    *,
    seed: int,
    folder: Path | None = None,
) -> UInt8[np.ndarray, "n h w c"]:
    """Test images `indices` under corruption `name` at `severity` (0: clean), computed,
    or read from the CIFAR-10-C `folder`."""
    if severity == 0:
        return test.images[indices]
    if folder is None:
        return np.concatenate([corrupt(name, test.images[j:j + 1], severity, seed=seed, first_index=int(j))
                               for j in indices])
    rows = (severity - 1) * len(test.labels) + np.asarray(indices)
    labels = _read_npy(folder / "labels.npy", _rows(test)[:1])
    if np.any(labels[rows] != test.labels[indices]):
        raise ValueError(f"{folder / 'labels.npy'}: its labels differ from the test split's; "
                         "is this CIFAR-10-C, with the test images in their order?")
    return np.asarray(_read_npy(folder / f"{name}.npy", _rows(test))[rows])


def check_cifar10_c(folder: Path, names: tuple[str, ...], test: Split) -> None:
    """Fail early, naming the file, if `folder` lacks a corruption or has a bad file."""
    _read_npy(folder / "labels.npy", _rows(test)[:1])
    for name in names:
        _read_npy(folder / f"{name}.npy", _rows(test))


def _rows(test: Split) -> tuple[int, ...]:
    """The shape of a corruption's file: 5 severities of the test split (50,000 x 32 x 32 x 3
    for CIFAR-10)."""
    return (5 * len(test.labels), *test.images.shape[1:])


def _read_npy(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """An array of `shape` (uint8 images, or integer labels), memory-mapped; the error names
    the file and what is wrong."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a CIFAR-10-C folder has labels.npy and one "
                                "<corruption>.npy per corruption)")
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError as error:
        raise ValueError(f"{path}: not a .npy array ({error})") from error
    wanted, kind = (np.int64, "integer labels") if len(shape) == 1 else (np.uint8, "uint8 images")
    if array.shape != shape or not np.can_cast(array.dtype, wanted):
        raise ValueError(f"{path}: expected {kind} of shape {shape} (5 severities of the test "
                         f"split), got {array.dtype} of shape {array.shape}")
    return array
