"""Classifying test images with a discriminative model (the WideResNet baseline, SPEC.md §8).

The counterpart of `experiments.estimates.classify_chunk` for `--model wrn`
runs: per-image records with the same keys where they mean the same thing
(index, label, prediction, seconds, compiling), and the logits in place of
log p(x | y).
"""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int64, UInt8

import baseline


@eqx.filter_jit
def logits_of(model: baseline.WideResNet, pixels: UInt8[Array, "n h w c"]) -> Float[Array, "n k"]:
    """The logits of n uint8 images, fed as the bins' midpoints (`baseline.model_inputs`)."""
    return jax.vmap(model)(baseline.model_inputs(pixels))


def discriminative_chunk(
    model: baseline.WideResNet,
    images: UInt8[np.ndarray, "n h w c"],
    labels: Int64[np.ndarray, " n"],
    indices: Int64[np.ndarray, " n"],
    *,
    first: bool = False,
) -> list[dict]:
    """Per-image records for the test images `indices` (pixels `images`): index, label,
    prediction (the argmax of the logits), logits, and the chunk's seconds per image.

    Deterministic: no noise, no dropout. `first` marks the first chunk of a loop,
    whose time may include compiling (`compiling`, as in `classify_chunk`).
    """
    began = time.perf_counter()
    logits = np.asarray(jax.block_until_ready(logits_of(model, jnp.asarray(images))))
    seconds = (time.perf_counter() - began) / len(indices)
    return [
        {"index": int(i), "label": int(label), "prediction": int(np.argmax(row)),
         "logits": row.tolist(), "seconds": seconds, "compiling": first}
        for i, label, row in zip(indices, labels, logits)
    ]


def accuracy(records: list[dict]) -> float:
    """The fraction of records whose prediction is their label."""
    return float(np.mean([r["prediction"] == r["label"] for r in records]))
