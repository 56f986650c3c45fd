"""Estimating log p(x | y) on test images: the settings, the compiled estimate, cached runs.

Shared by the evaluation entry points (table1, table2, figure3, ...) and
`benchmarks/classify.py`, so that a setting means the same computation in each.
"""

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jaxtyping import Array, Int64, PRNGKeyArray, Shaped, UInt8
from tqdm import tqdm

import score
from classify import batch_class_log_likelihoods, shortlist_class_log_likelihoods, summarize
from experiments.cli import option
from experiments.data import Split
from experiments.discriminative import discriminative_chunk
from experiments.files import write_npz
from experiments.parallel import data_parallel, split_or_replicated
from experiments.results import chunked, run_chunks, running_accuracy
from experiments.runs import Run
from likelihood import Hutchinson, OneSolve, VmappedSolves
from sde import SubVPSDE

SOLVERS = {"dopri5": diffrax.Dopri5(), "tsit5": diffrax.Tsit5()}
BATCHING = {"one-solve": OneSolve(), "vmapped": VmappedSolves()}


@dataclasses.dataclass(frozen=True)
class Estimate:
    """How log p(x | y) is estimated: every setting that decides the numbers.

    Hashable, so that it is a static argument of the compiled estimate.
    """

    probes: int = 1
    rtol: float = 1e-5
    atol: float = 1e-5
    t0: float = 1e-5
    solver: str = "dopri5"
    batching: str = "one-solve"
    share_noise: bool = True
    shortlist: int | None = None
    first_pass_tolerance: float = 1e-3


@dataclasses.dataclass(frozen=True)
class EstimateOptions:
    """The command-line options of an `Estimate`; None means the run's preset's value."""

    probes: int | None = option("Rademacher probes per solve")
    images_per_solve: int | None = option("images whose labels share one ODE solve")
    rtol: float | None = option("relative tolerance of the solver")
    atol: float | None = option("absolute tolerance of the solver")
    t0: float = option("start time of the likelihood ODE", 1e-5)
    solver: Literal["dopri5", "tsit5"] = option("Runge-Kutta solver", "dopri5")
    batching: Literal["one-solve", "vmapped"] = option(
        "one shared solve per chunk, or a solve per image-label", "one-solve"
    )
    share_noise: bool = option("same dequantisation noise and probes for all labels", True)
    shortlist: int | None = option(
        "early elimination: a first pass (1 probe, --first-pass-tolerance) ranks the labels "
        "and only this many best ones are solved with the full settings; off when unset"
    )
    first_pass_tolerance: float = option("rtol = atol of the --shortlist first pass", 1e-3)


# The paper's values for CIFAR-10 (SPEC.md §4: n = 30 draws, rtol = atol = 1e-5); the
# CPU presets' from benchmarks/classify.py and whole-split runs (benchmarks/README.md):
# on the digits test split rtol 1e-3 gave the same 360 predictions as 1e-4 at half the cost.
_CPU_EVALUATION = dict(probes=4, rtol=1e-3, atol=1e-3, images_per_solve=20)
PRESET_EVALUATION: dict[str, dict] = {
    "digits": _CPU_EVALUATION,
    "mnist": _CPU_EVALUATION,
    "fashion-mnist": _CPU_EVALUATION,
    "cifar10": dict(probes=30, rtol=1e-5, atol=1e-5, images_per_solve=10),
    "cifar10-deep": dict(probes=30, rtol=1e-5, atol=1e-5, images_per_solve=10),
}


def resolve(options: EstimateOptions, preset: str) -> EstimateOptions:
    """Fill every None among probes, rtol, atol and images_per_solve with the preset's value."""
    defaults = PRESET_EVALUATION[preset]
    filled = {k: v for k, v in defaults.items() if getattr(options, k) is None}
    options = dataclasses.replace(options, **filled)
    for name in ("probes", "images_per_solve"):
        if getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    return options


def estimate_of(options: EstimateOptions) -> Estimate:
    fields = {f.name for f in dataclasses.fields(Estimate)}
    return Estimate(**{k: v for k, v in dataclasses.asdict(options).items() if k in fields})


@eqx.filter_jit
def estimate_log_likelihoods(
    model: score.ScoreNet, pixels: Shaped[Array, "n c h w"], keys: PRNGKeyArray, estimate: Estimate
) -> dict[str, Array]:
    """log p(x | y) of n images under every label, the prediction and the cost per image.

    `pixels` are uint8, dequantised with noise from `keys`, or model-space floats used as
    given (`classify.pair_log_likelihoods`); the probes come from `keys` either way.

    `nfe` counts the solver's function evaluations that the image took part
    in; `evaluations` counts network passes on one (image, label) input,
    forward passes and JVPs alike (one per label and probe at each function
    evaluation), so that settings with other probes, labels or passes compare.
    """
    options = dict(
        divergence=Hutchinson(estimate.probes), share_noise=estimate.share_noise,
        batching=BATCHING[estimate.batching], rtol=estimate.rtol, atol=estimate.atol,
        t0=estimate.t0, solver=SOLVERS[estimate.solver],
    )
    num_classes = model.config.num_classes
    if estimate.shortlist is None:
        log_probs, stats = batch_class_log_likelihoods(
            model, SubVPSDE(), pixels, keys=keys, num_classes=num_classes, **options
        )
        nfe = jnp.max(stats.num_function_evaluations, axis=1)
        return dict(log_probs=log_probs, prediction=jnp.argmax(log_probs, axis=1), nfe=nfe,
                    evaluations=nfe * num_classes * (1 + estimate.probes))
    tolerance = estimate.first_pass_tolerance
    result = shortlist_class_log_likelihoods(
        model, SubVPSDE(), pixels, keys=keys, num_classes=num_classes, keep=estimate.shortlist,
        first_pass=dict(divergence=Hutchinson(1), rtol=tolerance, atol=tolerance), **options,
    )
    first_nfe = jnp.max(result.first_stats.num_function_evaluations, axis=1)
    exact_nfe = jnp.max(result.exact_stats.num_function_evaluations, axis=1)
    return dict(
        log_probs=result.log_probs, prediction=result.prediction, nfe=first_nfe + exact_nfe,
        evaluations=first_nfe * num_classes * 2
        + exact_nfe * estimate.shortlist * (1 + estimate.probes),
    )


def classify_chunk(
    model: score.ScoreNet,
    images: UInt8[np.ndarray, "n h w c"],
    labels: Int64[np.ndarray, " n"],
    indices: Int64[np.ndarray, " n"],
    key: PRNGKeyArray,
    shardings: tuple[NamedSharding, NamedSharding],
    estimate: Estimate,
    first: bool,
) -> list[dict]:
    """Per-image results for the test images `indices` (pixels `images`), their labels in
    one solve. Each image's noise and probes come from `key` and its test-set index, so
    an image gets the same draws wherever it is evaluated (clean or corrupted alike).

    `first` marks the first chunk of a loop, whose time may include compiling:
    its records say so (`compiling`), and speed figures leave them out.
    """
    pixels = jnp.moveaxis(jnp.asarray(images), -1, 1)  # c h w
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices))
    pixels, keys = jax.device_put((pixels, keys), split_or_replicated(len(indices), *shardings))
    began = time.perf_counter()
    result = jax.block_until_ready(estimate_log_likelihoods(model, pixels, keys, estimate))
    seconds = (time.perf_counter() - began) / len(indices)
    return [
        {"index": int(i), "label": int(label), "prediction": int(prediction),
         "log_probs": np.asarray(lp).tolist(), "nfe": int(nfe), "evaluations": int(evaluations),
         "seconds": seconds, "compiling": first}
        for i, label, lp, prediction, nfe, evaluations in zip(
            indices, labels, result["log_probs"], result["prediction"], result["nfe"],
            result["evaluations"])
    ]


def estimate_images(
    model: score.ScoreNet,
    test: Split,
    indices: np.ndarray,
    estimate: Estimate,
    *,
    key: PRNGKeyArray,
    images_per_solve: int,
    cache: Path | None = None,
    desc: str = "estimate",
) -> dict[str, np.ndarray]:
    """`classify_chunk` over all `indices`, as arrays: log_probs [n, K], prediction, nfe, ...

    Each image's `seconds` is its chunk's time per image; `compiling` marks
    the first chunk, whose time may include compiling (see `seconds_per_image`).

    With `cache`, the arrays are saved there under a name derived from every
    input that decides them (settings, key, images, labels and the model's
    parameters), and a later call with the same inputs reads them back
    instead of solving again.
    """
    fingerprint = hashlib.sha1(json.dumps(
        [dataclasses.asdict(estimate), jax.random.key_data(key).tolist(), images_per_solve]
    ).encode())
    for array in (test.images[indices], test.labels[indices],
                  *jax.tree.leaves(eqx.filter(model, eqx.is_array))):
        fingerprint.update(np.ascontiguousarray(array).tobytes())
    path = cache and cache / f"{fingerprint.hexdigest()[:20]}.npz"
    if path is not None and path.exists():
        with np.load(path) as saved:
            return dict(saved)
    shardings = data_parallel(images_per_solve)
    model = jax.device_put(model, shardings[0])
    records = []
    for start in tqdm(range(0, len(indices), images_per_solve), desc=desc, unit="solve",
                      disable=None, leave=False):
        chunk = indices[start:start + images_per_solve]
        records += classify_chunk(model, test.images[chunk], test.labels[chunk], chunk, key,
                                  shardings, estimate, first=start == 0)
    arrays = {name: np.asarray([r[name] for r in records]) for name in records[0]}
    if path is not None:
        write_npz(path, arrays)
    return arrays


def seconds_per_image(seconds: np.ndarray, compiling: np.ndarray) -> float:
    """Typical solve time per image: the median over images, leaving out chunks that may
    include compiling (if any others exist). The median shrugs off a few solves slowed
    by other work on a shared machine."""
    seconds, compiling = np.asarray(seconds), np.asarray(compiling, bool)
    timed = seconds[~compiling] if np.any(~compiling) else seconds
    return float(np.median(timed))


ChunkClassifier = Callable[[np.ndarray, np.ndarray, np.ndarray, bool], list[dict]]


def chunk_classifier(run: Run, options: EstimateOptions, seed: int) -> ChunkClassifier:
    """classify(images, labels, indices, compiling) -> per-image lines, for either kind of run:
    `classify_chunk` (log p(x | y) by `options`, the chunk split over the devices as in
    CPU_NOTES trap 2) for a score network, `discriminative_chunk` (logits) for a WideResNet."""
    if run.config.model == "wrn":
        return lambda images, labels, indices, first: discriminative_chunk(
            run.model, images, labels, indices, first=first)
    estimate, key = estimate_of(options), jax.random.key(seed)
    shardings = data_parallel(options.images_per_solve)
    model = jax.device_put(run.model, shardings[0])
    return lambda images, labels, indices, first: classify_chunk(
        model, images, labels, indices, key, shardings, estimate, first)


def classify_test_images(
    run: Run, options: EstimateOptions, test: Split, order: np.ndarray, results_path: Path, *,
    seed: int, desc: str,
) -> list[dict]:
    """`chunk_classifier` on the test images `order`, `options.images_per_solve` per chunk,
    resumable from `results_path`."""
    classify = chunk_classifier(run, options, seed)
    return run_chunks(
        results_path, chunked(order, options.images_per_solve),
        lambda indices, first: classify(test.images[indices], test.labels[indices], indices, first),
        desc=desc, postfix=running_accuracy,
    )


def accuracy_and_bits(records: list[dict], num_dims: int) -> dict[str, float | None]:
    """Accuracy, and mean bits/dim under the true label and marginal, of per-image lines
    (None for a discriminative model's, which have logits and no likelihood)."""
    # A shortlist predicts from its exact pass only, which the argmax in summarize cannot see.
    accuracy = float(np.mean([r["label"] == r["prediction"] for r in records]))
    if "log_probs" not in records[0]:
        return {"accuracy": accuracy, "bits_per_dim": None, "bits_per_dim_marginal": None}
    log_probs = jnp.asarray([r["log_probs"] for r in records])
    labels = jnp.asarray([r["label"] for r in records])
    summary = {k: float(v) for k, v in summarize(log_probs, labels, num_dims).items()}
    return {**summary, "accuracy": accuracy}
