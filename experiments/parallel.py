"""Data parallelism over devices (docs/cpu.md trap 2).

A batch is split over the largest number of devices that divides it, so any
device count works (6 host devices and a batch of 128 use 4 of them); the
state is replicated over the same devices. XLA partitions the compiled step
from its inputs' shardings, so the numbers are those of one device up to
float rounding (tests/test_train.py).

With several processes (`experiments.distributed`) evaluation uses each
process's own devices, and training the devices of every process.
"""

from collections.abc import Sequence

import jax
from jax.sharding import NamedSharding, PartitionSpec


def devices_for(batch_size: int, available: int | None = None) -> int:
    """The largest device count, at most `available` (default: this process's), that divides the batch."""
    available = jax.local_device_count() if available is None else available
    if batch_size < 1:
        raise ValueError(f"a batch needs at least one example, got {batch_size}")
    return max(d for d in range(1, min(available, batch_size) + 1) if batch_size % d == 0)


def data_parallel(batch_size: int,
                  devices: Sequence[jax.Device] | None = None) -> tuple[NamedSharding, NamedSharding]:
    """Shardings that replicate a state and split batches of `batch_size` over the first
    `devices_for(batch_size)` of `devices` (default: this process's, `jax.local_devices()`;
    a batch of another size is given the first)."""
    devices = list(jax.local_devices() if devices is None else devices)
    devices = devices[: devices_for(batch_size, len(devices))]
    mesh = jax.make_mesh((len(devices),), ("data",), devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,))
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))


def split_or_replicated(size: int, replicated: NamedSharding, split: NamedSharding) -> NamedSharding:
    """`split` for a batch of `size` that divides over its mesh, else `replicated` (a short
    last chunk): both live on the same devices, as one compiled call needs."""
    return split if size % split.mesh.size == 0 else replicated


def local_replica(tree):
    """The arrays of a replicated tree as this process's own copy, on its first device (no
    transfer): a computation or read on it involves no other process."""
    own = lambda leaf: leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf
    return jax.tree.map(own, tree)
