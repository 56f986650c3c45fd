"""Training-step speed: the project's step against PyTorch's and against a matmul's FLOP rate.

    python -m benchmarks.train                          # digits and fashion-mnist presets
    python -m benchmarks.train --presets digits --batch 128

For each preset: the step `experiments.train` runs (`experiments.training.train_step`:
the score-matching objective with importance-sampled t, Adam, clipping, the EMA) at the
given batch, split over the visible devices as training does; the same architecture's
Adam step in PyTorch on the plain noise-prediction loss (`benchmarks.network`; skipped
without torch); the step's FLOPs from XLA's cost analysis; and the FLOP rate of a
2048 x 2048 float32 matmul on the same devices, for the share of it the step reaches.
Times are the best of a few steps after compiling; PyTorch runs first (run after XLA
its threads compete with XLA's pool).

`--levers` times instead the 28x28 step (batch 128, the fashion-mnist preset's training
settings) for network variants around the preset before 2026-11-30 (nf 32, two
residual blocks per level): what dropout, attention, the layout, the flipped-kernel
convolutions of `score.for_reverse_mode`, depth, width and batch size cost.
"""

import argparse
import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import score
from benchmarks.network import torch_train_step_ms
from experiments import training
from experiments.parallel import data_parallel

REPEATS = 5


def best_seconds(step, carry, repeats: int = REPEATS) -> float:
    """The best time of `carry = step(carry)` after a first call (which compiles): each call
    gets what the last returned, as a training step needs (it donates the state it is given)."""
    carry = jax.block_until_ready(step(carry))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        carry = jax.block_until_ready(step(carry))
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops_per_second(size: int = 2048) -> float:
    """A float32 size x size matmul, split by rows over the devices as a batch would be."""
    replicated, split = data_parallel(size)
    a = jax.device_put(jax.random.normal(jax.random.key(0), (size, size)), split)
    b = jax.device_put(jax.random.normal(jax.random.key(1), (size, size)), replicated)
    matmul = jax.jit(jnp.matmul)
    return 2 * size**3 / best_seconds(lambda _: matmul(a, b), None)


def step_function(preset: str, network: score.NetConfig | None = None):
    """The training step of `experiments.train` for `preset` (with another network if given),
    as a function of (state, images, labels)."""
    config = training.resolve(training.TrainConfig(preset=preset))
    optimizer, settings = training.make_optimizer(config), training.StepSettings.of(config)
    state = training.init_state(network or training.network_config(config), 0, optimizer)
    return (lambda s, images, labels: training.train_step(s, images, labels, optimizer, settings)), state


def step_flops(step, state, images, labels) -> float:
    """XLA's count for one step on one device (the whole batch)."""
    analysis = jax.jit(step).lower(state, images, labels).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis["flops"])


def measure(preset: str, batch: int, network: score.NetConfig | None = None) -> dict:
    network = network or score.PRESETS[preset]
    shape = (batch, network.image_size, network.image_size, network.channels)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = (np.arange(batch) % network.num_classes).astype(np.int32)
    step, state = step_function(preset, network)
    flops = step_flops(step, state, images, labels)
    replicated, split = data_parallel(batch)
    state = jax.device_put(state, replicated)
    images, labels = jax.device_put((images, labels), split)
    seconds = best_seconds(lambda s: step(s, images, labels)[0], state)
    return {"preset": preset, "batch": batch, "devices": split.mesh.size, "jax_s": seconds, "flops": flops}


def levers() -> None:
    before = dataclasses.replace(score.PRESETS["fashion-mnist"], nf=32, num_res_blocks=2)
    variants = {
        "the preset before 2026-11-30 (nf 32, 2 blocks, 1,919,521 parameters)": (before, 128),
        "no dropout": (dataclasses.replace(before, dropout=0.0), 128),
        "no attention": (dataclasses.replace(before, attn_resolutions=()), 128),
        "channel-first convolutions": (dataclasses.replace(before, layout="channels_first"), 128),
        "flipped-kernel convolutions (score.for_reverse_mode)": (dataclasses.replace(before, reverse_mode=True), 128),
        "batch 64 (time for 64 images)": (before, 64),
        "1 block per level": (dataclasses.replace(before, num_res_blocks=1), 128),
        "nf 16": (dataclasses.replace(before, nf=16), 128),
        "nf 16, 1 block per level (the preset since 2026-11-30)": (score.PRESETS["fashion-mnist"], 128),
    }
    print(f"jax {jax.__version__}, {jax.device_count()} devices; fashion-mnist training step\n")
    print("| network | batch | step (s) | vs the preset before | GFLOP per step | GFLOP/s |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    reference = None
    for name, (network, batch) in variants.items():
        r = measure("fashion-mnist", batch, network)
        reference = reference or r["jax_s"]
        print(f"| {name} | {batch} | {r['jax_s']:.3f} | {r['jax_s'] / reference:.2f} | "
              f"{r['flops'] / 1e9:.1f} | {r['flops'] / r['jax_s'] / 1e9:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="digits,fashion-mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--levers", action="store_true", help="the 28x28 step's network variants instead")
    args = parser.parse_args()
    if args.levers:
        return levers()
    presets = args.presets.split(",")
    try:
        import torch
    except ImportError:
        torch = None
    torch_s = {p: torch_train_step_ms(score.PRESETS[p], args.batch)[0] / 1e3 for p in presets} if torch else {}
    rows = [measure(p, args.batch) for p in presets]
    matmul = matmul_flops_per_second()
    print(f"jax {jax.__version__}, {jax.device_count()} devices; torch "
          f"{torch.__version__ + ' (2 threads)' if torch else 'not installed: no PyTorch column'}; "
          f"matmul 2048^2 float32: {matmul / 1e9:.1f} GFLOP/s\n")
    print("| preset | batch | devices | JAX step (s) | PyTorch step (s) | JAX / PyTorch | GFLOP per step "
          "| achieved GFLOP/s | share of matmul rate |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        rate = r["flops"] / r["jax_s"]
        theirs = torch_s.get(r["preset"])
        torch_cells = "| |" if theirs is None else f"| {theirs:.3f} | {r['jax_s'] / theirs:.2f} |"
        print(f"| {r['preset']} | {r['batch']} | {r['devices']} | {r['jax_s']:.3f} {torch_cells} "
              f"{r['flops'] / 1e9:.1f} | {rate / 1e9:.1f} | {rate / matmul:.1%} |")


if __name__ == "__main__":
    main()
