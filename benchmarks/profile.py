"""Where the time of the network pass goes inside a solve (issue 25, lever 3).

    python -m benchmarks.profile [--preset fashion-mnist] [--run DIR] [--out DIR]

A classifier's unit of work is the score network on one chunk (images x labels
inputs, split over the host devices as a solve splits it), once forward and
once per probe as a JVP, inside the solver's while loop. Inside a `fori_loop`
(docs/cpu.md trap 1) this times, on that batch:

- the forward pass, and the forward with one JVP probe (`likelihood.batch_divergence`);
- each pass's convolutions alone, every one with its own shapes and settings
  (read from the pass's jaxpr, so nothing is retyped), and its matrix products
  (`dot_general`: dense layers, attention) alone;

with XLA's FLOP count of each and its rate against a 2048^2 float32 matmul in
the same process. A pass's time minus its convolutions' and products' is what
everything else costs (GroupNorm, SiLU and the other elementwise chains,
softmax, resampling, layout changes). It then times the forward per input at
other chunk sizes, the "chunking of images per solve" lever. Each replayed
operation's output is summed into the loop's carry, so the products carry the
cost of one read of their outputs beyond what they cost inside the pass.
"""

import argparse
import dataclasses
from pathlib import Path

import jax
import jax.extend.core as jex
import jax.numpy as jnp

import score
from benchmarks.network import perturbed
from benchmarks.train import best_seconds, matmul_flops_per_second
from experiments.files import write_json, write_text
from experiments.parallel import data_parallel
from experiments.runs import load_run
from likelihood import Hutchinson, batch_divergence

CONVOLUTIONS, PRODUCTS = ("conv_general_dilated",), ("dot_general",)
REPEATS = 3


@dataclasses.dataclass(frozen=True)
class Call:
    """One primitive application of a traced program: what to bind again, on what shapes."""

    primitive: jex.Primitive
    operands: tuple[jax.ShapeDtypeStruct, ...]
    params: dict


def primitive_calls(jaxpr: jex.Jaxpr, names: tuple[str, ...]) -> list[Call]:
    """Every application of the primitives `names` in `jaxpr` and its sub-jaxprs (custom
    derivatives, pjit), in program order."""
    calls = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in names:
            calls.append(Call(eqn.primitive, tuple(jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype)
                                                   for v in eqn.invars), dict(eqn.params)))
        for sub in jex.jaxprs_in_params(eqn.params):
            calls += primitive_calls(sub, names)
    return calls


def in_loop(body, iterations: int):
    """`body(operands, carry) -> scalar` repeated in a fori_loop, the scalar being the next
    iteration's carry: work that depends on it cannot be hoisted out of the loop."""
    def looped(operands):
        step = lambda _, carry: body(operands, carry).astype(carry.dtype)
        return jax.lax.fori_loop(0, iterations, step, jnp.zeros((), operands[0].dtype))
    return looped


def replay(calls: list[Call]):
    """A function of the calls' operands and a carry that applies each call once, the carry added
    to its second (small: kernel or weight) operand, and sums its outputs, scaled down so that
    the carry stays finite."""
    def body(flat, carry):
        total, start = 0.0, 0
        for call in calls:
            first, second, *rest = flat[start:start + len(call.operands)]
            start += len(call.operands)
            total = total + 1e-30 * jnp.sum(call.primitive.bind(first, second + carry, *rest, **call.params))
        return total
    return body


def placed(shapes, batch: int, key):
    """Random operands of `shapes`, split over the devices along a leading axis of size `batch`
    (as the solve's batch is), replicated otherwise."""
    replicated, split = data_parallel(batch)
    keys = jax.random.split(key, len(shapes))
    return [jax.device_put(jax.random.normal(k, s.shape, s.dtype),
                           split if s.shape and s.shape[0] == batch else replicated)
            for k, s in zip(keys, shapes)]


def seconds_per_iteration(function, operands, iterations: int) -> float:
    looped = jax.jit(in_loop(function, iterations))
    return best_seconds(lambda _: looped(operands), None, REPEATS) / iterations


def flops(function, operands) -> float:
    """XLA's count for one application (no loop)."""
    analysis = jax.jit(lambda ops: function(ops, jnp.float32(0))).lower(operands).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis["flops"])


def passes(net: score.ScoreNet, batch: int, key) -> dict:
    """name -> (function of [x], its single operand's shape): the forward and the forward with
    one JVP probe on `batch` inputs at mixed times and labels, as a solve's chunk holds them."""
    config = net.config
    shape = (batch, config.channels, config.image_size, config.image_size)
    t = jnp.float32(0.3)
    labels = jnp.arange(batch) % config.num_classes
    probes = jax.random.rademacher(key, (batch, 1, *shape[1:]), dtype=jnp.float32)
    network = lambda x: jax.vmap(net, in_axes=(0, None, 0))(x, t, labels)

    def forward(operands, carry):
        return 1e-30 * jnp.sum(network(operands[0] + carry))

    def with_probe(operands, carry):
        values, channels = batch_divergence(network, operands[0] + carry, probes, Hutchinson(1))
        return 1e-30 * (jnp.sum(values) + jnp.sum(channels))

    return {"forward": forward, "forward + 1 JVP probe": with_probe}, jax.ShapeDtypeStruct(shape, jnp.float32)


def profile_pass(name: str, function, x_shape, batch: int, iterations: int, matmul: float, key) -> list[dict]:
    """The pass, its convolutions alone and its products alone: time, FLOPs, rate."""
    x = placed([x_shape], batch, key)
    jaxpr = jax.make_jaxpr(function)(x, jnp.float32(0)).jaxpr
    rows = [{"what": name, "calls": None, "seconds": seconds_per_iteration(function, x, iterations),
             "flops": flops(function, x)}]
    for part, names in (("convolutions", CONVOLUTIONS), ("matrix products", PRODUCTS)):
        calls = primitive_calls(jaxpr, names)
        operands = placed([s for call in calls for s in call.operands], batch, jax.random.fold_in(key, len(rows)))
        body = replay(calls)
        rows.append({"what": f"{name}: its {part} alone", "calls": len(calls),
                     "seconds": seconds_per_iteration(body, operands, iterations), "flops": flops(body, operands)})
    whole, convolutions, products = rows
    rows.append({"what": f"{name}: the rest (by difference)", "calls": None,
                 "seconds": whole["seconds"] - convolutions["seconds"] - products["seconds"],
                 "flops": whole["flops"] - convolutions["flops"] - products["flops"]})
    for row in rows:
        row["share_of_pass_time"] = row["seconds"] / whole["seconds"]
        row["gflops_per_second"] = row["flops"] / row["seconds"] / 1e9 if row["seconds"] > 0 else None
        row["share_of_matmul_rate"] = row["flops"] / row["seconds"] / matmul if row["seconds"] > 0 else None
    return rows


def markdown(rows: list[dict], chunks: list[dict], header: str) -> str:
    lines = [header, "", "| what | calls | ms per pass | share of the pass's time | GFLOP | GFLOP/s "
             "| share of the matmul rate |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        rate = "" if r["gflops_per_second"] is None else f"{r['gflops_per_second']:.1f}"
        share = "" if r["share_of_matmul_rate"] is None else f"{r['share_of_matmul_rate']:.1%}"
        lines.append(f"| {r['what']} | {r['calls'] or ''} | {1e3 * r['seconds']:.1f} | {r['share_of_pass_time']:.0%} "
                     f"| {r['flops'] / 1e9:.2f} | {rate} | {share} |")
    lines += ["", "| images per chunk | inputs | forward ms | ms per input | GFLOP/s |", "| ---: | ---: | ---: | ---: | ---: |"]
    for c in chunks:
        lines.append(f"| {c['images']} | {c['inputs']} | {1e3 * c['seconds']:.1f} | {1e3 * c['seconds'] / c['inputs']:.3f} "
                     f"| {c['flops'] / c['seconds'] / 1e9:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fashion-mnist", help="network preset (without --run: random weights)")
    parser.add_argument("--run", type=Path, help="a score run whose trained network to time instead")
    parser.add_argument("--images", type=int, default=20, help="images per chunk (the preset default's)")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[5, 10, 20, 40], help="images per chunk to compare")
    parser.add_argument("--iterations", type=int, default=5, help="passes per timed loop")
    parser.add_argument("--out", type=Path, help="folder for profile.md and profile.json")
    args = parser.parse_args(argv)
    key = jax.random.key(0)
    net = load_run(args.run).model if args.run else perturbed(score.ScoreNet(score.PRESETS[args.preset], key=key), key)
    matmul = matmul_flops_per_second()
    labels = net.config.num_classes
    rows = []
    functions, x_shape = passes(net, args.images * labels, key)
    for name, function in functions.items():
        rows += profile_pass(name, function, x_shape, args.images * labels, args.iterations, matmul, key)
        print(rows[-4]["what"], f"{1e3 * rows[-4]['seconds']:.1f} ms", flush=True)
    chunks = []
    for images in args.chunk_sizes:
        functions, x_shape = passes(net, images * labels, key)
        x = placed([x_shape], images * labels, key)
        chunks.append({"images": images, "inputs": images * labels, "flops": flops(functions["forward"], x),
                       "seconds": seconds_per_iteration(functions["forward"], x, args.iterations)})
    header = (f"{args.run or args.preset + ' (random weights)'}: {args.images} images x {labels} labels per chunk over "
              f"{jax.local_device_count()} host device(s); 2048^2 float32 matmul {matmul / 1e9:.1f} GFLOP/s; "
              f"jax {jax.__version__}")
    text = markdown(rows, chunks, header)
    print(text)
    result = {"header": header, "matmul_flops_per_second": matmul, "rows": rows, "chunks": chunks}
    if args.out:
        write_text(args.out / "profile.md", text)
        write_json(args.out / "profile.json", result)
    return result


if __name__ == "__main__":
    main()
