"""Data parallelism over the visible devices (docs/cpu.md trap 2).

A batch is split over the largest number of devices that divides it, so any
device count works (6 host devices and a batch of 128 use 4 of them); the
state is replicated over the same devices. XLA partitions the compiled step
from its inputs' shardings, so the numbers are those of one device up to
float rounding (tests/test_train.py).
"""

import jax
from jax.sharding import NamedSharding, PartitionSpec


def devices_for(batch_size: int, available: int | None = None) -> int:
    """The largest device count, at most `available` (default: all), that divides the batch."""
    available = jax.device_count() if available is None else available
    if batch_size < 1:
        raise ValueError(f"a batch needs at least one example, got {batch_size}")
    return max(d for d in range(1, min(available, batch_size) + 1) if batch_size % d == 0)


def data_parallel(batch_size: int) -> tuple[NamedSharding, NamedSharding]:
    """Shardings that replicate a state and split batches of `batch_size` over the first
    `devices_for(batch_size)` devices (a batch of another size is given the first)."""
    devices = jax.devices()[: devices_for(batch_size)]
    mesh = jax.make_mesh((len(devices),), ("data",), devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,))
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))


def split_or_replicated(size: int, replicated: NamedSharding, split: NamedSharding) -> NamedSharding:
    """`split` for a batch of `size` that divides over its mesh, else `replicated` (a short
    last chunk): both live on the same devices, as one compiled call needs."""
    return split if size % split.mesh.size == 0 else replicated
