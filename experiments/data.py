"""Image classification data sets as uint8 arrays (docs/method.md §6).

Every loader returns a `Split`: images (N, H, W, C) uint8, channel-last with
C = 1 for grayscale, int64 labels (N,) and the class names. `source` picks
where the data comes from: None for the default, "hub" for the Hugging Face
hub, or a folder of local files whose format is detected from its contents:

- parquet files with the hub's schema (`train-*.parquet`, `test-*.parquet` or
  `train/*.parquet`, ...), read through `datasets` like the hub's own files;
- gzipped (or plain) IDX files with the standard MNIST names;
- the `cifar-10-batches-py` folder of CIFAR-10's python version.
"""

import gzip
import os
import pickle
import struct
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
from jaxtyping import Int64, UInt8

from experiments.optional import load

if TYPE_CHECKING:
    import datasets

SplitName = Literal["train", "test"]
Source = str | os.PathLike | None

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DIGITS_SEED = 0
DIGITS_TEST_PER_CLASS = 36  # 360 test images, 1,437 for training

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
)  # fmt: skip
# Names from Zalando's README; the IDX files carry none.
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DIGIT_CLASSES = tuple(str(k) for k in range(10))


class _Schema(NamedTuple):
    """Where a data set lives on the hub and how its parquet files are laid out."""

    repo: str
    image_column: str
    mode: str  # the PIL mode every image is converted to: "RGB" or "L" (grayscale)
    class_names: tuple[str, ...]  # used when the files carry no names


_CIFAR10 = _Schema("uoft-cs/cifar10", "img", "RGB", CIFAR10_CLASSES)
_MNIST = _Schema("ylecun/mnist", "image", "L", DIGIT_CLASSES)
_FASHION_MNIST = _Schema("zalando-datasets/fashion_mnist", "image", "L", FASHION_MNIST_CLASSES)

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_FORMAT = (
    "the four IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"
)
_PARQUET_FORMAT = "parquet files with the hub's schema (train-*.parquet, test-*.parquet)"


class DatasetUnavailableError(RuntimeError):
    """The data could not be fetched (hub unreachable); the message names local alternatives."""


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class Split:
    """One split of a data set: uint8 images (N, H, W, C), int64 labels (N,), class names."""

    images: UInt8[np.ndarray, "n h w c"]
    labels: Int64[np.ndarray, "n"]
    class_names: tuple[str, ...]

    def __post_init__(self):
        # Fail here, not deep inside training, when a source decodes to something odd
        # (e.g. images of mixed sizes come back from `datasets` as an object array).
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"{self.images.shape[0]} images but labels of shape {self.labels.shape}"
            )
        n_classes = len(self.class_names)
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= n_classes):
            raise ValueError(f"labels outside 0..{n_classes - 1}")


def digits(split: SplitName, *, source: Source = None) -> Split:
    """scikit-learn's 8x8 digits (1,797 images; shipped in its wheel, no download): docs/method.md §6.

    The raw values k = 0..16 become round(k * 255 / 16) with halves rounded up,
    i.e. (k * 255 + 8) // 16: 0, 16, 32, ..., 128, ..., 239, 255. The data thus
    has only 17 distinct levels, not 256; bits/dim on it are not comparable to
    those of 8-bit images. Test split: 36 images of each digit (360) chosen by
    `numpy.random.default_rng(0).permutation`; the other 1,437 are training.
    Both keep the original order.
    """
    _check_split(split)
    if source is not None:
        raise ValueError(f"digits ship inside scikit-learn; source must be None, got {source!r}")
    raw = load("sklearn.datasets", "the digits data set").load_digits()
    levels = raw.images.astype(np.int64)
    images = ((levels * 255 + 8) // 16).astype(np.uint8)[..., None]
    labels = raw.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SEED).permutation(len(labels))
    in_test = np.zeros(len(labels), dtype=bool)
    for k in range(10):
        in_test[order[labels[order] == k][:DIGITS_TEST_PER_CLASS]] = True
    keep = in_test if split == "test" else ~in_test
    return Split(images[keep], labels[keep], DIGIT_CLASSES)


def mnist(split: SplitName, *, source: Source = None) -> Split:
    """MNIST: by default from the hub (`ylecun/mnist`), or a folder of IDX or parquet files."""
    _check_split(split)
    alternatives = (
        f"pass a local folder (source=DIR, --data DIR) with {_IDX_FORMAT}, or {_PARQUET_FORMAT}"
    )
    if source is None or source == "hub":
        return _from_hub(_MNIST, split, alternatives)
    return _from_idx_or_parquet(Path(source), split, _MNIST, alternatives)


def fashion_mnist(split: SplitName, *, source: Source = None) -> Split:
    """Fashion-MNIST (docs/method.md §6): by default the Debian folder if installed, else the hub.

    Debian's `dataset-fashion-mnist` puts the IDX files in /usr/share/datasets/fashion-mnist/;
    the hub copy is `zalando-datasets/fashion_mnist`. A folder may hold IDX or parquet files.
    """
    _check_split(split)
    alternatives = (
        f"install the Debian package dataset-fashion-mnist (files in {DEBIAN_FASHION_MNIST}/), "
        f"or pass a local folder (source=DIR, --data DIR) with {_IDX_FORMAT}, or {_PARQUET_FORMAT}"
    )
    if source is None:
        source = DEBIAN_FASHION_MNIST if DEBIAN_FASHION_MNIST.is_dir() else "hub"
    if source == "hub":
        return _from_hub(_FASHION_MNIST, split, alternatives)
    return _from_idx_or_parquet(Path(source), split, _FASHION_MNIST, alternatives)


def cifar10(split: SplitName, *, source: Source = None) -> Split:
    """CIFAR-10 (docs/method.md §6): by default from the hub (`uoft-cs/cifar10`, 50,000 / 10,000).

    A folder may hold parquet files with the hub's schema (`img`, `label`) or the
    original python version: `cifar-10-batches-py` (data_batch_1..5, test_batch,
    batches.meta), or a folder containing it. Those batches are pickles, which
    can run code when loaded: use only the official archive.
    """
    _check_split(split)
    alternatives = (
        f"pass a local folder (source=DIR, --data DIR) with {_PARQUET_FORMAT}, "
        "or the cifar-10-batches-py folder of the python version of CIFAR-10"
    )
    if source is None or source == "hub":
        return _from_hub(_CIFAR10, split, alternatives)
    folder = _existing_folder(Path(source), alternatives)
    for batches in (folder, folder / "cifar-10-batches-py"):
        if (batches / "batches.meta").is_file():
            return _from_pickle_batches(batches, split)
    return _from_parquet(folder, split, _CIFAR10, alternatives)


# Preset names (the training configurations) to the loader of their data.
DATASETS: MappingProxyType[str, Callable[..., Split]] = MappingProxyType(
    {
        "digits": digits,
        "mnist": mnist,
        "fashion-mnist": fashion_mnist,
        "cifar10": cifar10,
        "cifar10-deep": cifar10,
    }
)


def load_dataset(name: str, split: SplitName, *, source: Source = None) -> Split:
    """The `split` of the data set of preset `name` (a key of `DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name](split, source=source)


def read_idx(path: str | os.PathLike) -> UInt8[np.ndarray, "..."]:
    """Parse an IDX file of unsigned bytes (gzipped if the name ends in .gz).

    Layout: magic 0x00 0x00 0x08 ndim, then ndim big-endian uint32 sizes, then
    the data in row-major order. Only the unsigned-byte type (0x08) is read:
    it is the only one the MNIST-style files use.
    """
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
            raw = file.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({error})") from error
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(
            f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()}, expected 000008nn)"
        )
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = struct.unpack(f">{raw[3]}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(
            f"{path}: IDX sizes {shape} need {expected} bytes, the file has {len(raw)} (truncated?)"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _existing_folder(folder: Path, expected: str) -> Path:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; {expected}")
    return folder


def _from_idx_or_parquet(folder: Path, split: SplitName, schema: _Schema, expected: str) -> Split:
    _existing_folder(folder, expected)
    if not any(folder.glob("*-ubyte*")):
        return _from_parquet(folder, split, schema, expected)
    images_name, labels_name = _IDX_FILES[split]
    images, labels = (_read_idx_named(folder, name) for name in (images_name, labels_name))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{folder}: {images_name} must hold N images (N, H, W) and {labels_name} their N labels "
            f"(N,), got {images.shape} and {labels.shape}"
        )
    return Split(images[..., None], labels.astype(np.int64), schema.class_names)


def _read_idx_named(folder: Path, name: str) -> np.ndarray:
    for path in (folder / f"{name}.gz", folder / name):
        if path.is_file():
            return read_idx(path)
    raise FileNotFoundError(f"{folder / name}.gz: missing; expected {_IDX_FORMAT}")


def _from_pickle_batches(folder: Path, split: SplitName) -> Split:
    names = [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
    chunks = [_unpickle(folder / name) for name in names]
    # Rows are 3072 bytes: the 1024 red, then green, then blue values of a 32x32 image.
    images = np.concatenate(
        [np.asarray(c[b"data"], np.uint8).reshape(-1, 3, 32, 32) for c in chunks]
    )
    labels = np.concatenate([np.asarray(c[b"labels"], np.int64) for c in chunks])
    class_names = tuple(
        name.decode() for name in _unpickle(folder / "batches.meta")[b"label_names"]
    )
    return Split(images.transpose(0, 2, 3, 1).copy(), labels, class_names)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; expected CIFAR-10's data_batch_1..5, test_batch, batches.meta"
        )
    with path.open("rb") as file:
        return pickle.load(file, encoding="bytes")


def _from_parquet(folder: Path, split: SplitName, schema: _Schema, expected: str) -> Split:
    # Both hub layouts: plain_text/train-00000-of-00001.parquet and plain_text/train/0000.parquet.
    files = [
        p
        for p in sorted(folder.rglob("*.parquet"))
        if p.name.startswith(split) or p.parent.name == split
    ]
    if not files:
        raise FileNotFoundError(f"{folder}: no {split} data found; {expected}")
    datasets = _datasets("reading parquet files")
    try:
        table = datasets.load_dataset("parquet", data_files={split: [str(p) for p in files]}, split=split)
    except Exception as error:  # pyarrow's and datasets' own errors: name the files in one line
        raise ValueError(f"{folder}: could not read the {split} parquet files "
                         f"{[p.name for p in files]}: {type(error).__name__}: {error}") from None
    return _from_table(table, schema)


def _datasets(purpose: str):
    """The `datasets` package, imported only where parquet files or the hub are read."""
    return load("datasets", f"{purpose} (IDX files and CIFAR-10's python batches need only numpy)")


def _from_hub(schema: _Schema, split: SplitName, alternatives: str) -> Split:
    unreachable = f"could not reach the Hugging Face hub for {schema.repo}; {alternatives}"
    datasets = _datasets(f"reading {schema.repo} from the Hugging Face hub")
    # Offline mode reads the local cache; otherwise probe first, since `datasets` retries for 20+ s.
    if not datasets.config.HF_HUB_OFFLINE and not _hub_reachable():
        raise DatasetUnavailableError(
            f"{unreachable} (or set HF_DATASETS_OFFLINE=1 to use a cached copy)"
        )
    try:
        table = datasets.load_dataset(schema.repo, split=split)
    except ConnectionError as error:
        raise DatasetUnavailableError(unreachable) from error
    return _from_table(table, schema)


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub endpoint answers within `timeout_s` (through any configured proxy)."""
    endpoint = load("huggingface_hub.constants", "reading the Hugging Face hub").ENDPOINT
    request = urllib.request.Request(endpoint, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True  # an error status is still an answer
    except OSError:  # URLError, timeouts, DNS failures
        return False


def _from_table(table: "datasets.Dataset", schema: _Schema) -> Split:
    """Decode the image column to one uint8 array; ClassLabel names win over the schema's."""
    image_column, mode, class_names = schema.image_column, schema.mode, schema.class_names
    datasets = _datasets("decoding the images of a table")
    if image_column not in table.column_names or "label" not in table.column_names:
        raise ValueError(
            f"expected columns {image_column!r} and 'label', found {table.column_names}"
        )
    # Converting every image to one PIL mode fixes the channel count; the numpy
    # formatter (never "jax": it compiles per batch length) stacks them in one array.
    table = table.cast_column(image_column, datasets.Image(mode=mode))
    columns = table.with_format("numpy", columns=[image_column, "label"])[:]
    images = columns[image_column]
    label_feature = table.features["label"]
    if isinstance(label_feature, datasets.ClassLabel):
        class_names = tuple(label_feature.names)
    return Split(
        images[..., None] if mode == "L" else images, columns["label"].astype(np.int64), class_names
    )
