"""Table 1: classify the test split by likelihood, and its bits/dim.

    python -m experiments.table1 --run runs/digits

Loads the EMA model of a training run, computes log p(x | y) for every test
image and label from the probability-flow ODE (SPEC.md §4; uniform
dequantisation, shared noise across labels), and reports accuracy of
argmax_y, bits/dim under the true label and marginal over labels, function
evaluations and speed. Per-image results go to `images.jsonl` as they are
computed; a rerun with the same settings continues from them. `table1.json`
and `table1.md` (beside the paper's published rows) hold the summary.
"""

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from classify import batch_class_log_likelihoods, summarize
from experiments import checkpoint
from experiments.cli import option, parse_config
from experiments.data import load_dataset
from experiments.runs import load_run
from experiments.train import data_parallel
from likelihood import Hutchinson, OneSolve, VmappedSolves
from sde import SubVPSDE

RESULTS_FILE = "images.jsonl"
SOLVERS = {"dopri5": diffrax.Dopri5(), "tsit5": diffrax.Tsit5()}
BATCHING = {"one-solve": OneSolve(), "vmapped": VmappedSolves()}

# SPEC.md §5, Table 1 of the paper (CIFAR-10 test set, 10,000 images).
PUBLISHED_ROWS = [
    ("SBGC (Zimmermann et al. 2021)", "CIFAR-10", "10,000", "95.04", "3.11"),
    ("SBGC, deep variant (Zimmermann et al. 2021)", "CIFAR-10", "10,000", "", "3.08"),
    ("WideResNet-28-12 (baseline in the paper)", "CIFAR-10", "10,000", "95.42", ""),
]


@dataclasses.dataclass(frozen=True)
class Table1Config:
    run: Path = option("training run folder (experiments.train --out)", Path("runs/digits"))
    out: Path | None = option("results folder (default: RUN/table1)")
    limit: int | None = option("evaluate a seeded random subset of this many test images")
    probes: int | None = option("Rademacher probes per solve")
    images_per_solve: int = option("images whose labels share one ODE solve", 10)
    rtol: float = option("relative tolerance of the solver", 1e-5)
    atol: float = option("absolute tolerance of the solver", 1e-5)
    t0: float = option("start time of the likelihood ODE", 1e-5)
    solver: Literal["dopri5", "tsit5"] = option("Runge-Kutta solver", "dopri5")
    batching: Literal["one-solve", "vmapped"] = option(
        "one shared solve per chunk, or a solve per image-label", "one-solve"
    )
    share_noise: bool = option("same dequantisation noise and probes for all labels", True)
    seed: int = option("seed of the subset, the dequantisation noise and the probes", 0)
    data: str | None = option("data source: a local folder, 'hub', or None for the default")


# The paper averages n = 30 draws on CIFAR-10 (SPEC.md §4); the CPU presets use one shared probe.
PRESET_PROBES = {"digits": 1, "mnist": 1, "fashion-mnist": 1, "cifar10": 30, "cifar10-deep": 30}


def _settings(config: Table1Config, preset: str) -> dict:
    """Everything that decides the numbers, as saved beside them."""
    probes = config.probes if config.probes is not None else PRESET_PROBES[preset]
    settings = dataclasses.asdict(dataclasses.replace(config, probes=probes))
    return json.loads(json.dumps({k: v for k, v in settings.items() if k != "out"}, default=str))


def evaluation_order(num_images: int, limit: int | None, seed: int) -> np.ndarray:
    """Test-set indices to evaluate: all, or a seeded random subset in index order."""
    if limit is None or limit >= num_images:
        return np.arange(num_images)
    if limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    return np.sort(np.random.default_rng(seed).choice(num_images, limit, replace=False))


@eqx.filter_jit
def _class_log_likelihoods(model, pixels, keys, settings: tuple):
    probes, rtol, atol, t0, solver, batching, share_noise = settings
    noise_fn = lambda x, t, y: model(x, t, y)
    return batch_class_log_likelihoods(
        noise_fn, SubVPSDE(), pixels, keys=keys, num_classes=model.config.num_classes,
        share_noise=share_noise, batching=BATCHING[batching], divergence=Hutchinson(probes),
        rtol=rtol, atol=atol, t0=t0, solver=SOLVERS[solver],
    )


def _classify_chunk(model, test, indices, key, split, solve_settings) -> list[dict]:
    """Per-image results for the test images `indices`, their labels in one solve."""
    pixels = jnp.moveaxis(jnp.asarray(test.images[indices]), -1, 1)  # c h w
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices))
    if len(indices) % jax.device_count() == 0:
        pixels, keys = jax.device_put((pixels, keys), split)
    began = time.perf_counter()
    log_probs, stats = jax.block_until_ready(
        _class_log_likelihoods(model, pixels, keys, solve_settings)
    )
    seconds = (time.perf_counter() - began) / len(indices)
    return [
        {"index": int(i), "label": int(test.labels[i]), "prediction": int(np.argmax(lp)),
         "log_probs": np.asarray(lp).tolist(), "nfe": int(np.max(nfe)), "seconds": seconds}
        for i, lp, nfe in zip(indices, log_probs, stats.num_function_evaluations)
    ]


def _read_results(path: Path) -> list[dict]:
    """Completed per-image lines; a line cut short by an interruption is dropped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def evaluate(config: Table1Config) -> dict:
    """Classify the chosen test images, resuming from `images.jsonl`; returns the summary."""
    train_config, model = load_run(config.run)
    out = config.out or config.run / "table1"
    settings = _settings(config, train_config.preset)
    record = {"settings": settings}
    if (out / checkpoint.CONFIG_FILE).exists():
        checkpoint.check_same_config(out, record, ignore=())
    else:
        checkpoint.save_config(out, record)

    test = load_dataset(train_config.preset, "test", source=config.data)
    order = evaluation_order(len(test.labels), config.limit, config.seed)
    results_path = out / RESULTS_FILE
    records = _read_results(results_path)
    if len(records) < len(order):
        # Restart at a chunk boundary: the images of one solve share its steps, so a
        # chunk recomputed with other companions would not give the same numbers.
        records = records[: len(records) - len(records) % config.images_per_solve]
    results_path.write_text("".join(json.dumps(r) + "\n" for r in records))

    solve_settings = (settings["probes"], config.rtol, config.atol, config.t0, config.solver,
                      config.batching, config.share_noise)
    key = jax.random.key(config.seed)
    # CPU_NOTES trap 2: the image axis split over the devices (one per core on a CPU).
    replicated, split = data_parallel(jax.device_count())
    model = jax.device_put(model, replicated)
    bar = tqdm(total=len(order), initial=len(records), desc="table1", unit="image", disable=None)
    try:
        for start in range(len(records), len(order), config.images_per_solve):
            indices = order[start:start + config.images_per_solve]
            chunk = _classify_chunk(model, test, indices, key, split, solve_settings)
            with results_path.open("a") as file:  # one write per chunk: resume restarts at a chunk
                file.write("".join(json.dumps(r) + "\n" for r in chunk))
            records += chunk
            bar.update(len(chunk))
            accuracy = np.mean([r["label"] == r["prediction"] for r in records])
            bar.set_postfix(accuracy=f"{accuracy:.3f}")
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted after {len(records)} images: results so far in {results_path}; "
              "the same command continues from them", file=sys.stderr)
        raise SystemExit(130)
    bar.close()
    return _summarize(records, train_config.preset, test.images.shape[1:], settings, out)


def _summarize(records: list[dict], preset: str, image_shape, settings: dict, out: Path) -> dict:
    log_probs = jnp.asarray([r["log_probs"] for r in records])
    labels = jnp.asarray([r["label"] for r in records])
    summary = {k: float(v) for k, v in summarize(log_probs, labels, math.prod(image_shape)).items()}
    seconds = sum(r["seconds"] for r in records)
    summary.update(
        num_images=len(records),
        nfe_per_image=float(np.mean([r["nfe"] for r in records])),
        images_per_second=len(records) / seconds,
        preset=preset,
        settings=settings,
    )
    text = json.dumps(summary, indent=2).encode()
    checkpoint.write_atomically(out / "table1.json", lambda file: file.write(text))
    markdown = markdown_table(summary).encode()
    checkpoint.write_atomically(out / "table1.md", lambda file: file.write(markdown))
    return summary


def markdown_table(summary: dict) -> str:
    s = summary["settings"]
    rows = [f"| {name} (published) | {data} | {n} | {acc} | {bpd} |" for name, data, n, acc, bpd
            in PUBLISHED_ROWS]
    rows.append(
        f"| sbgc, this run (preset {summary['preset']}; {s['probes']} probe(s), "
        f"{'shared' if s['share_noise'] else 'separate'} noise, {s['solver']} rtol {s['rtol']} "
        f"atol {s['atol']}, t0 {s['t0']}) | {summary['preset']} test split | "
        f"{summary['num_images']:,} | {100 * summary['accuracy']:.2f} | "
        f"{summary['bits_per_dim']:.3f} (marginal {summary['bits_per_dim_marginal']:.3f}) |"
    )
    return "\n".join([
        "| model | data | images | accuracy (%) | bits/dim |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"This run: {summary['nfe_per_image']:.0f} function evaluations per image (each runs "
        f"the network on all labels of the image), {summary['images_per_second']:.2f} images/s.",
        "",
    ])


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(
        Table1Config, argv, prog="python -m experiments.table1",
        description=__doc__.split("\n\n")[0],
        preset_defaults={p: {"probes": n} for p, n in PRESET_PROBES.items()},
    )
    summary = evaluate(config)
    print(markdown_table(summary))
    return summary


if __name__ == "__main__":
    main()
