"""A run's classifier, built from the command line and the preset, and its per-image records.

`classifier_of` is the one place where the kind of a run (a score network
or a WideResNet) decides how it classifies; everything after it asks the
classifier (`kind`, `deterministic`). Shared by the evaluation entry points
(table1, table2, figure3, ...) and `benchmarks/classify.py`, so that a
setting means the same computation in each.

A per-image record, the one schema of every table:

    {"index", "label", "kind", "prediction", "scores", "cost": {"nfe", "passes"},
     "seconds", "compiling"}

`kind` is the classifier's ("likelihood": scores are log p(x | y) in nats;
"elbo": lower bounds on it, in nats; "logits"); `seconds` is the chunk's time per image and `compiling` marks a
first chunk, whose time may include compiling.
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
import optimistix as optx
from jaxtyping import Int64, PRNGKeyArray, UInt8

import score
from classify import (LOG_DENSITY_KINDS, Classifier, ELBOClassifier, LikelihoodClassifier, LogitClassifier, Scores,
                      ShortlistClassifier, summarize)
from experiments.cli import option
from experiments.data import Split
from experiments.files import write_npz
from experiments.parallel import data_parallel, split_or_replicated
from experiments.progress import progress
from experiments.results import EvaluationConfig, chunked, run_chunks, running_accuracy
from experiments.runs import Run
from likelihood import DiffusionTime, Hutchinson, LogSNRTime, OneSolve, VmappedSolves, log_p_norm, part_max_norm

# Adaptive Runge-Kutta pairs: 5(4) Dormand-Prince (the paper's) and Tsitouras, 2(1) Heun
# (benchmarks/cost.py measures each). Not Bosh3: with a given first step diffrax evaluates it
# more often than its FSAL tableau says (143 against 142 in one solve), so its counts would lie.
SOLVERS = {"dopri5": diffrax.Dopri5(), "tsit5": diffrax.Tsit5(), "heun": diffrax.Heun()}
BATCHING = {"one-solve": OneSolve(), "vmapped": VmappedSolves()}
ERROR_NORMS = {"rms": optx.rms_norm, "log-p": log_p_norm, "max": part_max_norm}
TIME_VARIABLES = {"t": DiffusionTime(), "log-snr": LogSNRTime()}


@dataclasses.dataclass(frozen=True)
class EstimateOptions:
    """The command-line options of a run's classifier; None means the run's preset's value."""

    probes: int | None = option("Rademacher probes per solve")
    probe_loop: Literal["auto", "unrolled", "vmapped", "scanned"] = option(
        "how the probes' JVPs are laid out in the compiled solve (docs/method.md §4): 'auto' unrolls "
        "a few on CPU and vmaps one linearisation otherwise; the numbers agree up to float rounding",
        "auto")
    images_per_solve: int | None = option("images whose labels share one ODE solve")
    rtol: float | None = option("relative tolerance of the solver", above=0)
    atol: float | None = option("absolute tolerance of the solver", above=0)
    t0: float = option("start time of the likelihood ODE", 1e-5, above=0)
    solver: Literal["dopri5", "tsit5", "heun"] = option("adaptive Runge-Kutta solver", "dopri5")
    grid_steps: int | None = option(
        "solve on a fixed grid of this many equal steps of --solver in --time-variable instead of "
        "adaptively (--rtol and --atol then do nothing): cheap and biased", at_least=1)
    error_norm: Literal["rms", "log-p", "max"] = option(
        "the step-size controller's error norm (docs/method.md §4.3): the RMS over pixels and log p, "
        "log p's entries alone, or the larger of the two parts' RMS", "rms")
    time_variable: Literal["t", "log-snr"] = option(
        "the variable the ODE is solved in (docs/method.md §4.3): the diffusion time t, or minus "
        "the log signal-to-noise ratio", "t")
    batching: Literal["one-solve", "vmapped"] = option(
        "one shared solve per chunk, or a solve per image-label", "one-solve"
    )
    share_noise: bool = option("same dequantisation noise and probes for all labels", True)
    shortlist: int | None = option(
        "early elimination: a first pass (1 probe, --first-pass-tolerance) ranks the labels "
        "and only this many best ones are solved with the full settings; 0: off (default: the "
        "preset's, for the adaptive exact classifier only)", at_least=0
    )
    first_pass_tolerance: float = option("rtol = atol of the --shortlist first pass", 1e-3)
    first_pass_steps: int | None = option(
        "the --shortlist first pass on a fixed grid of this many Heun steps (2 network evaluations "
        "each, 1 probe) instead of adaptive at --first-pass-tolerance (docs/method.md §4.8); 0: "
        "adaptive (default: the preset's)", at_least=0)
    first_pass: Literal["exact", "elbo"] = option(
        "what ranks the labels for --shortlist: the exact likelihood (1 probe, --first-pass-tolerance), "
        "or the ELBO with --elbo-samples pairs (forward passes only, docs/method.md §4.8)", "exact")
    estimator: Literal["exact", "elbo"] = option(
        "score each label by its exact log p from the probability-flow ODE, or by a Monte Carlo "
        "ELBO (a lower bound; forward passes only, docs/method.md §4.11)", "exact"
    )
    elbo_samples: int = option("--estimator elbo: (t, z) pairs per image, shared by its labels", 100,
                               at_least=1)
    elbo_rounds: str | None = option(
        "--estimator elbo, adaptive: rounds 'pairs:labels,...', each drawing that many new pairs "
        "for that many best labels so far (the first round's labels: all), e.g. '30:10,100:3'; "
        "replaces --elbo-samples"
    )


@dataclasses.dataclass(frozen=True)
class ClassifyConfig(EstimateOptions, EvaluationConfig):
    """A run's classifier on its test images: the settings of table1's folders, and of each of
    experiments.estimators' (so that either reads the other's)."""


# The paper's values for CIFAR-10 (docs/method.md §4.2: n = 30 draws, rtol = atol = 1e-5); the
# CPU presets' from benchmarks/classify.py, benchmarks/cost.py and whole-split runs
# (benchmarks/README.md). The 28x28 presets' 4 probes at 1e-3 come from digits, where rtol 1e-3
# gave the same 360 predictions as 1e-4 at half the cost. Digits: a shortlist of 2 after 4 Heun steps, then 2
# probes at rtol 1e-2, gave the 4-probe rtol-1e-3 solve's accuracy on the whole test split at
# 0.09 of its time (results/digits/table1_heun_shortlist/); at 28x28 no first pass ranks the
# labels well enough (results/fashion-mnist/first_pass_grids/), so those presets solve them all.
_CPU_EVALUATION = dict(probes=4, rtol=1e-3, atol=1e-3, images_per_solve=20, shortlist=0, first_pass_steps=0)
_PAPER_EVALUATION = dict(probes=30, rtol=1e-5, atol=1e-5, images_per_solve=10, shortlist=0, first_pass_steps=0)
PRESET_EVALUATION: dict[str, dict] = {
    "digits": dict(probes=2, rtol=1e-2, atol=1e-2, images_per_solve=20, shortlist=2, first_pass_steps=4),
    "mnist": _CPU_EVALUATION,
    "fashion-mnist": _CPU_EVALUATION,
    "cifar10": _PAPER_EVALUATION,
    "cifar10-deep": _PAPER_EVALUATION,
}


def resolve(options: EstimateOptions, preset: str) -> EstimateOptions:
    """Fill every None among probes, rtol, atol, images_per_solve, shortlist and
    first_pass_steps with the preset's value. The preset's shortlist applies to the adaptive
    exact classifier alone (an ELBO or a fixed grid scores every label unless --shortlist
    says otherwise), and its first-pass steps to an exact first pass alone; 0 turns either off."""
    defaults = PRESET_EVALUATION[preset]
    adaptive_exact = options.estimator == "exact" and options.grid_steps is None
    preset_shortlist = defaults["shortlist"] if adaptive_exact else 0
    shortlist = preset_shortlist if options.shortlist is None else options.shortlist
    preset_steps = defaults["first_pass_steps"] if shortlist and options.first_pass == "exact" else 0
    filled = {k: v for k, v in defaults.items() if getattr(options, k) is None}
    options = dataclasses.replace(options, **{**filled, "shortlist": shortlist, "first_pass_steps": (
        preset_steps if options.first_pass_steps is None else options.first_pass_steps)})
    for name, least in (("probes", 1), ("images_per_solve", 1), ("shortlist", 0), ("first_pass_steps", 0)):
        if getattr(options, name) < least:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {least}, got {getattr(options, name)}")
    return options


def elbo_schedule(options: EstimateOptions) -> dict:
    """ELBOClassifier's samples= or rounds= from --elbo-samples and --elbo-rounds."""
    if options.elbo_rounds is None:
        return {"samples": options.elbo_samples}
    try:
        rounds = tuple(tuple(int(n) for n in item.split(":")) for item in options.elbo_rounds.split(","))
    except ValueError:
        rounds = ()
    if not rounds or any(len(r) != 2 for r in rounds):
        raise ValueError(f"--elbo-rounds takes 'pairs:labels,...' (e.g. '30:10,100:3'), got "
                         f"{options.elbo_rounds!r}")
    return {"rounds": rounds}


def classifier_of(run: Run, options: EstimateOptions | None = None) -> Classifier:
    """The classifier a table evaluates: the run's model, scored as `options` say (resolved
    against the run's preset; None: the preset's defaults). A WideResNet is scored by its
    logits, whatever the options."""
    if not isinstance(run.model, score.ScoreNet):
        return LogitClassifier(run.model)
    options = resolve(options or EstimateOptions(), run.config.preset)
    if options.estimator == "elbo":
        return ELBOClassifier(run.model, t0=options.t0, **elbo_schedule(options))
    if options.first_pass_steps and (not options.shortlist or options.first_pass != "exact"):
        raise ValueError("--first-pass-steps sets the exact first pass of a --shortlist: give --shortlist "
                         "with --first-pass exact")
    if options.shortlist and options.first_pass == "elbo":
        exact = classifier_of(run, dataclasses.replace(options, shortlist=0))
        first = classifier_of(run, dataclasses.replace(options, estimator="elbo"))
        return ShortlistClassifier(first, exact, options.shortlist)
    return LikelihoodClassifier(
        run.model, divergence=Hutchinson(options.probes, probe_loop=options.probe_loop),
        rtol=options.rtol, atol=options.atol,
        t0=options.t0, solver=SOLVERS[options.solver], batching=BATCHING[options.batching],
        share_noise=options.share_noise, shortlist=options.shortlist or None,
        first_pass_tolerance=options.first_pass_tolerance, first_pass_steps=options.first_pass_steps or None,
        steps=options.grid_steps,
        norm=ERROR_NORMS[options.error_norm],
        time_variable=TIME_VARIABLES[options.time_variable],
    )


def model_name(classifier: Classifier) -> str:
    """How the tables name the model: "sbgc", or the WideResNet's "WRN-depth-width"."""
    if classifier.kind == "logits":
        return f"WRN-{classifier.network.config.depth}-{classifier.network.config.width}"
    return "sbgc"


def require_likelihood(classifier: Classifier, run: Run, what: str) -> LikelihoodClassifier:
    """Refuse a discriminative run, or an ELBO, where `what` needs the exact log p(x | y)."""
    if classifier.kind == "logits":
        raise ValueError(f"{what} needs a likelihood, and {run.config.out} is a discriminative run "
                         f"({model_name(classifier)}); give it a score run")
    if classifier.kind != "likelihood":
        raise ValueError(f"{what} needs the exact likelihood of the probability-flow ODE; leave out "
                         f"--estimator {classifier.kind}")
    return classifier


def replicated(classifier: Classifier, sharding) -> Classifier:
    """The classifier with its arrays (the network's parameters) placed by `sharding`."""
    arrays, static = eqx.partition(classifier, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, sharding), static)


def image_keys(key: PRNGKeyArray, indices) -> PRNGKeyArray:
    """Each image's key from its test-set index, so that an image gets the same draws
    wherever it is evaluated (clean or corrupted alike)."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices))


def scored(kind: str, scores: Scores, i: int) -> dict:
    """The scored part of image i's record: kind, prediction, scores, cost, and for a
    shortlist which labels its exact pass solved."""
    shortlisted = {} if scores.shortlisted is None else {"shortlisted": np.asarray(scores.shortlisted[i]).tolist()}
    return {"kind": kind, "prediction": int(scores.prediction[i]), "scores": np.asarray(scores.scores[i]).tolist(),
            "cost": {"nfe": int(scores.nfe[i]), "passes": int(scores.passes[i])}, **shortlisted}


def classify_chunk(
    classifier: Classifier,
    images: UInt8[np.ndarray, "n h w c"],
    labels: Int64[np.ndarray, " n"],
    indices: Int64[np.ndarray, " n"],
    key: PRNGKeyArray,
    shardings,
    first: bool,
) -> list[dict]:
    """The records of the test images `indices` (pixels `images`), scored together (their
    labels in one solve), split over the devices (docs/cpu.md trap 2).

    `first` marks the first chunk of a loop, whose time may include compiling.
    """
    pixels, keys = jax.device_put((jnp.asarray(images), image_keys(key, indices)),
                                  split_or_replicated(len(indices), *shardings))
    began = time.perf_counter()
    scores = jax.device_get(jax.block_until_ready(classifier.scores(pixels, keys)))
    seconds = (time.perf_counter() - began) / len(indices)
    return [{"index": int(index), "label": int(label), **scored(classifier.kind, scores, i),
             "seconds": seconds, "compiling": first}
            for i, (index, label) in enumerate(zip(indices, labels))]


ChunkClassifier = Callable[[np.ndarray, np.ndarray, np.ndarray, bool], list[dict]]


def chunk_classifier(classifier: Classifier, images_per_solve: int, seed: int) -> ChunkClassifier:
    """classify(images, labels, indices, compiling) -> records: `classify_chunk` with the
    classifier placed on the devices that a chunk of `images_per_solve` images uses."""
    shardings = data_parallel(images_per_solve)
    placed, key = replicated(classifier, shardings[0]), jax.random.key(seed)
    return lambda images, labels, indices, first: classify_chunk(
        placed, images, labels, indices, key, shardings, first)


def classify_test_images(
    classifier: Classifier, images_per_solve: int, test: Split, order: np.ndarray, results_path: Path,
    *, seed: int, desc: str,
) -> list[dict]:
    """The records of the test images `order`, `images_per_solve` per chunk, resumable from
    `results_path`."""
    classify = chunk_classifier(classifier, images_per_solve, seed)
    return run_chunks(
        results_path, chunked(order, images_per_solve),
        lambda indices, first: classify(test.images[indices], test.labels[indices], indices, first),
        desc=desc, postfix=running_accuracy,
    )


def fingerprint(classifier: Classifier, test: Split, indices: np.ndarray, key: PRNGKeyArray,
                images_per_solve: int) -> str:
    """A name for the estimates of `estimate_images`, from every input that decides them."""
    arrays, static = eqx.partition(classifier, eqx.is_array)
    digest = hashlib.sha1(json.dumps(
        [eqx.tree_pformat(static, short_arrays=False), jax.random.key_data(key).tolist(), images_per_solve]
    ).encode())
    for array in (test.images[indices], test.labels[indices], *jax.tree.leaves(arrays)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:20]


def estimate_images(
    classifier: Classifier,
    test: Split,
    indices: np.ndarray,
    *,
    key: PRNGKeyArray,
    images_per_solve: int,
    cache: Path | None = None,
    desc: str = "estimate",
) -> dict[str, np.ndarray]:
    """`classify_chunk` over all `indices`, as arrays: scores [n, K], prediction, nfe, passes,
    seconds, compiling.

    With `cache`, the arrays are saved there under a name derived from every
    input that decides them (the classifier's settings and parameters, the key,
    the images and labels), and a later call with the same inputs reads them
    back instead of solving again.
    """
    path = cache and cache / f"{fingerprint(classifier, test, indices, key, images_per_solve)}.npz"
    if path is not None and path.exists():
        with np.load(path) as saved:
            return dict(saved)
    shardings = data_parallel(images_per_solve)
    placed = replicated(classifier, shardings[0])
    records = []
    for start in progress(range(0, len(indices), images_per_solve), desc=desc, unit="solve"):
        chunk = indices[start:start + images_per_solve]
        records += classify_chunk(placed, test.images[chunk], test.labels[chunk], chunk, key,
                                  shardings, first=start == 0)
    arrays = {"scores": np.asarray([r["scores"] for r in records]),
              **{name: np.asarray([r["cost"][name] for r in records]) for name in ("nfe", "passes")},
              **{name: np.asarray([r[name] for r in records]) for name in ("prediction", "seconds", "compiling")}}
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


def accuracy_and_bits(records: list[dict], num_dims: int) -> dict[str, float | int | None]:
    """Accuracy, and mean bits/dim under the true label and marginal, of records (None for
    logits, which are no likelihood; of an ELBO, the bound's). For a shortlist,
    `true_label_outside_shortlist` counts the images whose true label's score, and so
    bits/dim, is the first pass's (for an ELBO first pass, a bound); None otherwise."""
    # A shortlist predicts from its exact pass only, which the argmax in summarize cannot see.
    accuracy = float(np.mean([r["label"] == r["prediction"] for r in records]))
    outside = (sum(not r["shortlisted"][r["label"]] for r in records) if all("shortlisted" in r for r in records)
               else None)
    if records[0]["kind"] not in LOG_DENSITY_KINDS:
        return {"accuracy": accuracy, "bits_per_dim": None, "bits_per_dim_marginal": None,
                "true_label_outside_shortlist": outside}
    log_probs = jnp.asarray([r["scores"] for r in records])
    labels = jnp.asarray([r["label"] for r in records])
    summary = {k: float(v) for k, v in summarize(log_probs, labels, num_dims).items()}
    return {**summary, "accuracy": accuracy, "true_label_outside_shortlist": outside}
