"""Where a 28x28 training step's time goes: one 3x3 convolution layer, its two gradients, and ways around them.

    python -m benchmarks.conv      # about 3 minutes on 2 cores

One channel-last 3x3 'same' convolution of a batch of 128 28x28 maps with 32 and
64 channels (the widest 28x28 layers before 2026-11-30), float32, unsharded: forward,
forward + both gradients, the input gradient (dx) and the kernel gradient (dW)
alone, with XLA's own rules and with formulations that put dW on a matmul or a
forward-style convolution; the forward + backward in bfloat16; the same layer's
forward + backward in PyTorch (2 threads; skipped without torch); and a 2048^2
float32 matmul for the machine's rate. Then the forward + backward again in
fresh processes under XLA CPU flags. GFLOP/s count 2 x batch x pixels x 9 x
c_in x c_out per convolution (3 of them for forward + backward).
"""

import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

BATCH, SIZE = 128, 28
FLAGS = ["--xla_cpu_use_onednn=true", "--xla_cpu_experimental_onednn_custom_call=true",
         "--xla_cpu_use_xnnpack=true", "--xla_cpu_enable_fast_math=true"]


def best_seconds(function, *args, repeats: int = 5) -> float:
    jax.block_until_ready(function(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        best = min(best, time.perf_counter() - start)
    return best


def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def padded(x):
    return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def kernel_gradient_im2col(x, dy):
    """dW as one matmul of the 9 shifted copies of x (im2col) with dy."""
    p = padded(x)
    columns = jnp.stack([p[:, i:i + SIZE, j:j + SIZE] for i in range(3) for j in range(3)], 3)
    return jnp.einsum("bhwkc,bhwd->kcd", columns, dy).reshape(3, 3, x.shape[-1], dy.shape[-1])


def kernel_gradient_forward_conv(x, dy):
    """dW as a forward-style channel-last convolution: input channels as the batch, the batch
    as the features, dy as a 28x28 kernel, a 3x3 'valid' output."""
    lhs = jnp.transpose(padded(x), (3, 1, 2, 0))
    rhs = jnp.transpose(dy, (1, 2, 0, 3))
    out = jax.lax.conv_general_dilated(lhs, rhs, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.transpose(out, (1, 2, 0, 3))


def layer_rows(channels: int) -> list[tuple[str, float, int]]:
    """(what, seconds, convolutions counted) for one layer width."""
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (BATCH, SIZE, SIZE, channels))
    w = 0.1 * jax.random.normal(keys[1], (3, 3, channels, channels))
    dy = jax.random.normal(keys[2], x.shape)
    both = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))
    dx = lambda x, w, dy: jax.vjp(lambda x_: conv(x_, w), x)[1](dy)[0]
    dw = lambda x, w, dy: jax.vjp(lambda w_: conv(x, w_), w)[1](dy)[0]
    bf16 = jax.grad(lambda x, w: jnp.sum(conv(x, w).astype(jnp.float32) ** 2), argnums=(0, 1))
    return [
        ("forward", best_seconds(jax.jit(conv), x, w), 1),
        ("forward + dx + dW", best_seconds(jax.jit(both), x, w), 3),
        ("dx alone (XLA's rule)", best_seconds(jax.jit(dx), x, w, dy), 1),
        ("dW alone (XLA's rule)", best_seconds(jax.jit(dw), x, w, dy), 1),
        ("dW as im2col matmul", best_seconds(jax.jit(kernel_gradient_im2col), x, dy), 1),
        ("dW as forward-style conv", best_seconds(jax.jit(kernel_gradient_forward_conv), x, dy), 1),
        ("forward + dx + dW, bfloat16", best_seconds(jax.jit(bf16), x.astype(jnp.bfloat16),
                                                     w.astype(jnp.bfloat16)), 3),
    ]


def torch_rows(channels: int) -> list[tuple[str, float, int]]:
    try:
        import torch
    except ImportError:
        return []
    torch.set_num_threads(2)
    x = torch.randn(BATCH, channels, SIZE, SIZE, requires_grad=True)
    layer = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def timed(step) -> float:
        step()
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - start)
        return best

    return [("PyTorch forward", timed(lambda: layer(x)), 1),
            ("PyTorch forward + dx + dW", timed(lambda: (layer(x) ** 2).sum().backward()), 3)]


def flag_row() -> None:
    """In a fresh process (XLA_FLAGS is read once): the 32-channel forward + backward."""
    keys = jax.random.split(jax.random.key(0), 2)
    x = jax.random.normal(keys[0], (BATCH, SIZE, SIZE, 32))
    w = 0.1 * jax.random.normal(keys[1], (3, 3, 32, 32))
    both = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))
    print(f"{1e3 * best_seconds(jax.jit(both), x, w):.1f}")


def main() -> None:
    if sys.argv[1:] == ["--flag-row"]:
        return flag_row()
    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    matmul = 2 * 2048**3 / best_seconds(jax.jit(jnp.matmul), a, a)
    print(f"jax {jax.__version__}, {jax.device_count()} device(s); 2048^2 float32 matmul {matmul / 1e9:.0f} GFLOP/s\n")
    print("| channels | what | ms | GFLOP/s |\n| ---: | --- | ---: | ---: |")
    for channels in (32, 64):
        flops = 2 * BATCH * SIZE * SIZE * 9 * channels * channels
        for what, seconds, convolutions in layer_rows(channels) + torch_rows(channels):
            print(f"| {channels} | {what} | {1e3 * seconds:.1f} | {convolutions * flops / seconds / 1e9:.0f} |")
    print("\n| XLA_FLAGS | 32 channels, forward + dx + dW (ms) |\n| --- | ---: |")
    for flag in ["", *FLAGS]:
        environment = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | ({"XLA_FLAGS": flag} if flag else {})
        result = subprocess.run([sys.executable, "-m", "benchmarks.conv", "--flag-row"], env=environment,
                                capture_output=True, text=True, check=True)
        print(f"| {flag or '(none)'} | {result.stdout.strip().splitlines()[-1]} |")


if __name__ == "__main__":
    main()
