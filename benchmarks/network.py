"""Channel-first against channel-last convolutions in the score network, and against PyTorch.

docs/cpu.md trap 1: inside `while_loop`s (every ODE solve) XLA on CPU runs
channel-first convolutions far slower than channel-last ones, though called
directly they are close. This script times the same `ScoreNet` in both layouts
(`NetConfig.layout`) for the forward pass, the Hutchinson probe (`jax.jvp` with
respect to x) and an Adam training step on `score.loss`, each called directly
and inside a `jax.lax.fori_loop`, and prints milliseconds per call and the
ratio channel-first / channel-last. It also times a training step of the same
architecture written in PyTorch (2 threads; torch is not a project dependency,
the line is skipped without it) for the ratio JAX / PyTorch.

    python -m benchmarks.network
"""

import dataclasses
import math
import time
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import score
from sde import SubVPSDE

REPEATS = 3


@dataclasses.dataclass(frozen=True)
class Case:
    """One preset's batches and fori_loop lengths; the loops are short where an iteration takes seconds."""

    preset: str
    eval_batch: int  # forward and JVP
    train_batch: int
    eval_loop_iterations: int
    # Reverse mode is slow inside loops in either layout (see the table), and compiling the
    # 28x28 training loop takes tens of seconds per layout: None skips it there.
    train_loop_iterations: int | None


CASES = [Case("digits", 10, 128, 10, 3), Case("fashion-mnist", 10, 8, 3, None)]
LAYOUTS = ("channels_first", "channels_last")


def perturbed(net: score.ScoreNet, key) -> score.ScoreNet:
    """The network with noise on every parameter, so zero-initialised layers do real work."""
    leaves, treedef = jax.tree.flatten(net)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [p + 0.02 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def in_loop(step, iterations: int):
    """`step(carry, i) -> carry` repeated `iterations` times in a fori_loop."""
    return lambda carry: jax.lax.fori_loop(0, iterations, lambda i, c: step(c, i), carry)


def workloads(config: score.NetConfig, case: Case):
    """name -> (step, initial carry, batch, loop iterations) for forward, JVP and training step.

    A step maps its carry (and the iteration index) to a new carry of the same
    structure, so that a loop body depends on the previous iteration and XLA
    cannot hoist it out of the loop.
    """
    key = jax.random.key(0)
    net = perturbed(score.ScoreNet(config, key=key), jax.random.fold_in(key, 1))
    shape = (config.channels, config.image_size, config.image_size)
    x = jax.random.normal(jax.random.fold_in(key, 2), (case.eval_batch, *shape))
    t = jnp.linspace(1e-3, 1.0, case.eval_batch)
    y = jnp.arange(case.eval_batch) % config.num_classes
    v = jax.random.rademacher(jax.random.fold_in(key, 3), x.shape, dtype=x.dtype)

    def forward(carry, i=0):
        net, x = carry
        return net, jax.vmap(net)(x, t, y)

    def probe(carry, i=0):
        net, x = carry
        _, jv = jax.jvp(lambda x: jax.vmap(net)(x, t, y), (x,), (v,))
        return net, jv

    sde = SubVPSDE()
    optimiser = optax.adam(2e-4)
    x0 = jnp.tanh(jax.random.normal(jax.random.fold_in(key, 4), (case.train_batch, *shape)))
    labels = jnp.arange(case.train_batch) % config.num_classes

    def train_step(carry, i=0):
        net, opt_state = carry
        _, grads = eqx.filter_value_and_grad(score.loss)(net, sde, x0, labels, key=jax.random.fold_in(key, i))
        updates, opt_state = optimiser.update(grads, opt_state, net)
        return eqx.apply_updates(net, updates), opt_state

    return {
        "forward": (forward, (net, x), case.eval_batch, case.eval_loop_iterations),
        "JVP probe": (probe, (net, x), case.eval_batch, case.eval_loop_iterations),
        "train step": (train_step, (net, optimiser.init(net)), case.train_batch, case.train_loop_iterations),
    }


def milliseconds_per_call(function, carry, calls_per_run: int = 1) -> float:
    """Best of up to REPEATS runs of the compiled function (one run once it takes over 1 s), per call."""
    compiled = jax.jit(function).lower(carry).compile()
    best = math.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        jax.block_until_ready(compiled(carry))
        best = min(best, time.perf_counter() - start)
        if best > 1.0:
            break
    return 1e3 * best / calls_per_run


class Timing(NamedTuple):
    direct_ms: float
    loop_ms_per_iteration: float | None
    batch: int
    loop_iterations: int | None


def measure(case: Case) -> dict[tuple[str, str], Timing]:
    """(workload, layout) -> timing of the preset's network in each layout."""
    timings = {}
    for layout in LAYOUTS:
        config = dataclasses.replace(score.PRESETS[case.preset], layout=layout)
        for what, (step, carry, batch, iterations) in workloads(config, case).items():
            looped = None
            if iterations is not None:
                looped = milliseconds_per_call(in_loop(step, iterations), carry, iterations)
            timings[what, layout] = Timing(milliseconds_per_call(step, carry), looped, batch, iterations)
    return timings


def print_table(timings_by_preset: dict[str, dict[tuple[str, str], Timing]]):
    print("| preset | what | batch | direct: first / last (ms) | ratio | fori_loop: first / last (ms per iteration) | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for preset, timings in timings_by_preset.items():
        for what in ("forward", "JVP probe", "train step"):
            first, last = (timings[what, layout] for layout in LAYOUTS)
            direct = f"{first.direct_ms:.1f} / {last.direct_ms:.1f} | {first.direct_ms / last.direct_ms:.2f}"
            looped = "not run | "
            if first.loop_iterations is not None:
                looped = (
                    f"{first.loop_ms_per_iteration:.1f} / {last.loop_ms_per_iteration:.1f} "
                    f"({first.loop_iterations} iterations) | "
                    f"{first.loop_ms_per_iteration / last.loop_ms_per_iteration:.2f}"
                )
            print(f"| {preset} | {what} | {first.batch} | {direct} | {looped} |")


def torch_score_net(config: score.NetConfig):
    """The same DDPM++ architecture in PyTorch (channel-first, its CPU default)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def group_norm(c):
        return nn.GroupNorm(min(c // 4, 32), c, eps=1e-6)

    class ResnetBlock(nn.Module):
        def __init__(self, c_in, c_out, resample=None):
            super().__init__()
            embedding_dim = 4 * config.nf
            self.in_norm, self.in_conv = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
            self.time_projection = nn.Linear(embedding_dim, c_out)
            self.label_projection = nn.Linear(embedding_dim, c_out)
            self.out_norm, self.out_conv = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
            self.dropout = nn.Dropout(config.dropout)
            self.skip_conv = nn.Conv2d(c_in, c_out, 1) if c_in != c_out or resample else None
            self.resample_kind = resample

        def resample(self, x):
            if self.resample_kind == "up":
                return F.interpolate(x, scale_factor=2)  # nearest, as score_sde's naive_upsample_2d
            if self.resample_kind == "down":
                return F.avg_pool2d(x, 2)
            return x

        def forward(self, x, time_features, label_features):
            h = self.resample(F.silu(self.in_norm(x)))
            x = self.resample(x)
            h = self.in_conv(h)
            h = h + (self.time_projection(time_features) + self.label_projection(label_features))[:, :, None, None]
            h = self.out_conv(self.dropout(F.silu(self.out_norm(h))))
            if self.skip_conv is not None:
                x = self.skip_conv(x)
            return (x + h) / math.sqrt(2)

    class AttentionBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.norm = group_norm(c)
            self.query, self.key, self.value, self.output = (nn.Linear(c, c) for _ in range(4))

        def forward(self, x):
            b, c, height, width = x.shape
            tokens = self.norm(x).flatten(2).transpose(1, 2)
            weights = torch.softmax(self.query(tokens) @ self.key(tokens).transpose(1, 2) / math.sqrt(c), -1)
            h = self.output(weights @ self.value(tokens)).transpose(1, 2).reshape(b, c, height, width)
            return (x + h) / math.sqrt(2)

    def embedding_mlp(d_in, d_out):
        return nn.Sequential(nn.Linear(d_in, d_out), nn.SiLU(), nn.Linear(d_out, d_out))

    class ScoreNet(nn.Module):
        def __init__(self):
            super().__init__()
            nf, levels = config.nf, range(len(config.ch_mult))
            self.time_embedding = embedding_mlp(nf, 4 * nf)
            self.label_embedding = embedding_mlp(config.num_classes, 4 * nf)
            self.input_conv = nn.Conv2d(config.channels, nf, 3, padding=1)
            self.down, skip_channels, c = nn.ModuleList(), [nf], nf
            for level in levels:
                for _ in range(config.num_res_blocks):
                    self.down.append(ResnetBlock(c, nf * config.ch_mult[level]))
                    c = nf * config.ch_mult[level]
                    if config.resolutions[level] in config.attn_resolutions:
                        self.down.append(AttentionBlock(c))
                    skip_channels.append(c)
                if level < len(config.ch_mult) - 1:
                    self.down.append(ResnetBlock(c, c, "down"))
                    skip_channels.append(c)
            self.middle = nn.ModuleList([ResnetBlock(c, c), AttentionBlock(c), ResnetBlock(c, c)])
            self.up = nn.ModuleList()
            for level in reversed(levels):
                for _ in range(config.num_res_blocks + 1):
                    self.up.append(ResnetBlock(c + skip_channels.pop(), nf * config.ch_mult[level]))
                    self.up[-1].takes_skip = True
                    c = nf * config.ch_mult[level]
                if config.resolutions[level] in config.attn_resolutions:
                    self.up.append(AttentionBlock(c))
                if level > 0:
                    self.up.append(ResnetBlock(c, c, "up"))
            self.output_norm, self.output_conv = group_norm(c), nn.Conv2d(c, config.channels, 3, padding=1)

        def forward(self, x, t, y):
            half = config.nf // 2
            angles = config.time_scale * t[:, None] * torch.exp(-math.log(1e4) / (half - 1) * torch.arange(half))
            embeddings = (
                F.silu(self.time_embedding(torch.cat([angles.sin(), angles.cos()], 1))),
                F.silu(self.label_embedding(F.one_hot(y, config.num_classes).float())),
            )

            def apply(module, h):
                return module(h, *embeddings) if isinstance(module, ResnetBlock) else module(h)

            skips = [self.input_conv(x)]
            for module in self.down:
                h = apply(module, skips[-1])
                if isinstance(module, AttentionBlock):
                    skips[-1] = h
                else:
                    skips.append(h)
            h = skips[-1]
            for module in self.middle:
                h = apply(module, h)
            for module in self.up:
                if getattr(module, "takes_skip", False):
                    h = torch.cat([h, skips.pop()], 1)
                h = apply(module, h)
            return self.output_conv(F.silu(self.output_norm(h)))

    return ScoreNet()


def torch_train_step_ms(config: score.NetConfig, batch: int) -> tuple[float, int]:
    """Best of REPEATS Adam steps on the plain noise-prediction loss; also the parameter count."""
    import torch

    torch.set_num_threads(2)
    net = torch_score_net(config)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-4)
    sde = SubVPSDE()
    x0 = torch.tanh(torch.randn(batch, config.channels, config.image_size, config.image_size))
    y = torch.arange(batch) % config.num_classes

    def step():
        t = torch.rand(batch) * (1 - 1e-5) + 1e-5
        integrated_beta = sde.beta_min * t + 0.5 * (sde.beta_max - sde.beta_min) * t**2
        alpha, sigma = torch.exp(-integrated_beta / 2), -torch.expm1(-integrated_beta)
        z = torch.randn_like(x0)
        x_t = alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * z
        loss = torch.mean((z - net(x_t, t, y)) ** 2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    step()
    best = math.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best, sum(p.numel() for p in net.parameters())


def main():
    print(f"jax {jax.__version__}, devices {jax.devices()}; best of up to {REPEATS} runs\n")
    digits = CASES[0]
    try:
        import torch
    except ImportError:
        torch = None
    # PyTorch goes first: run after the JAX work, its steps took 80x longer, its
    # two threads competing with XLA's CPU thread pool.
    if torch is not None:
        torch_ms, torch_parameters = torch_train_step_ms(score.PRESETS[digits.preset], digits.train_batch)
    timings = {case.preset: measure(case) for case in CASES}
    print_table(timings)

    if torch is None:
        print("\ntorch is not installed: skipping the PyTorch comparison (pip install torch).")
        return
    jax_ms = timings[digits.preset]["train step", "channels_last"].direct_ms
    net = eqx.filter_eval_shape(score.ScoreNet, score.PRESETS[digits.preset], key=jax.random.key(0))
    jax_parameters = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(net))
    print(
        f"\n{digits.preset} training step, batch {digits.train_batch}: PyTorch {torch.__version__} "
        f"(2 threads, channel-first) {torch_ms:.1f} ms, JAX channel-last {jax_ms:.1f} ms: "
        f"JAX / PyTorch = {jax_ms / torch_ms:.2f} (parameters: PyTorch {torch_parameters:,}, JAX {jax_parameters:,})"
    )


if __name__ == "__main__":
    main()
