"""A pre-activation WideResNet (Zagoruyko & Komodakis 2016, "Wide Residual Networks").

The original's layers and parameter shapes (convolutions without bias, a
per-channel affine normalisation before every convolution, a linear
classifier with bias), with two changes:

- GroupNorm (score.layers.GroupNorm: min(C // 4, 32) groups) instead of
  BatchNorm. It has no running statistics, so the network stays a pure
  function of its parameters and one image: the same at training and test
  time, no `eqx.nn.State` threaded through training, evaluation and attacks,
  no batch axis to name under `jax.vmap`, and nothing to synchronise across
  devices. Its affine parameters are BatchNorm's, so the parameter count is
  the original's (36,479,194 for WRN-28-10 on CIFAR-10).
- Channel-last convolutions (`lax.conv_general_dilated` with ("NHWC", "HWIO",
  "NHWC")): XLA on CPU is several times faster with them inside loops
  (docs/cpu.md trap 1).

Initialisation as the original: convolutions N(0, 2 / (k^2 c_out)) (He,
fan-out); the classifier score.layers.Dense's default with zero bias.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from baseline.config import WRNConfig
from score.layers import LAYOUTS, Dense, GroupNorm, dropout

_LAYOUT = LAYOUTS["channels_last"]  # every feature map below is one example's "h w c"


class Conv(eqx.Module):
    """A k x k convolution without bias, padding (k - 1) / 2, stride 1 or 2 (the original's)."""

    kernel: Float[Array, "kh kw c_in c_out"]
    stride: int = eqx.field(static=True)

    def __init__(self, c_in: int, c_out: int, kernel_size: int, *, stride: int = 1, key: PRNGKeyArray):
        std = math.sqrt(2 / (kernel_size * kernel_size * c_out))
        self.kernel = std * jax.random.normal(key, (kernel_size, kernel_size, c_in, c_out))
        self.stride = stride

    def __call__(self, x: Float[Array, "h w c_in"]) -> Float[Array, "h2 w2 c_out"]:
        pad = (self.kernel.shape[0] - 1) // 2
        y = jax.lax.conv_general_dilated(
            x[None], self.kernel, window_strides=(self.stride, self.stride), padding=((pad, pad), (pad, pad)),
            dimension_numbers=_LAYOUT.conv_dimension_numbers,
        )
        return y[0]


class WideBlock(eqx.Module):
    """norm-ReLU-conv(stride)-norm-ReLU-dropout-conv plus the shortcut.

    The shortcut is the identity, or (when the width or the resolution
    changes) a 1x1 convolution of the pre-activated input, as in the original.
    """

    norm1: GroupNorm
    conv1: Conv
    norm2: GroupNorm
    conv2: Conv
    shortcut: Conv | None
    dropout_rate: float = eqx.field(static=True)

    def __init__(self, c_in: int, c_out: int, stride: int, dropout_rate: float, *, key: PRNGKeyArray):
        keys = jax.random.split(key, 3)
        self.norm1 = GroupNorm(c_in, _LAYOUT)
        self.conv1 = Conv(c_in, c_out, 3, stride=stride, key=keys[0])
        self.norm2 = GroupNorm(c_out, _LAYOUT)
        self.conv2 = Conv(c_out, c_out, 3, key=keys[1])
        self.shortcut = Conv(c_in, c_out, 1, stride=stride, key=keys[2]) if c_in != c_out or stride != 1 else None
        self.dropout_rate = dropout_rate

    def __call__(self, x: Float[Array, "h w c"], *, key: PRNGKeyArray | None = None) -> Float[Array, "h2 w2 c2"]:
        activated = jax.nn.relu(self.norm1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        h = jax.nn.relu(self.norm2(self.conv1(activated)))
        h = self.conv2(dropout(h, self.dropout_rate, key))
        return h + shortcut


class WideResNet(eqx.Module):
    """Class logits of one image x in [-1, 1] (`likelihood.to_model_space`).

    Built from a `WRNConfig`, e.g. `WideResNet(PRESETS["digits"], key=key)`;
    call it on one example and `jax.vmap` over a batch.
    """

    input_conv: Conv
    blocks: list[WideBlock]
    output_norm: GroupNorm
    classifier: Dense
    config: WRNConfig = eqx.field(static=True)

    def __init__(self, config: WRNConfig, *, key: PRNGKeyArray):
        input_key, blocks_key, classifier_key = jax.random.split(key, 3)
        self.input_conv = Conv(config.channels, 16, 3, key=input_key)
        block_keys = iter(jax.random.split(blocks_key, 3 * config.blocks_per_group))
        self.blocks = []
        c = 16
        for width, stride in zip(config.group_widths, config.strides):
            for i in range(config.blocks_per_group):
                block_stride = stride if i == 0 else 1
                self.blocks.append(WideBlock(c, width, block_stride, config.dropout, key=next(block_keys)))
                c = width
        self.output_norm = GroupNorm(c, _LAYOUT)
        self.classifier = Dense(c, config.num_classes, key=classifier_key)
        self.config = config

    def __call__(self, x: Float[Array, "c h w"], *, key: PRNGKeyArray | None = None) -> Float[Array, " k"]:
        """Logits of one image; dropout is on only when a `key` is given (training)."""
        expected_shape = (self.config.channels, self.config.image_size, self.config.image_size)
        if x.shape != expected_shape:
            raise ValueError(
                f"expected one image of shape {expected_shape} (c h w), got {x.shape}; vmap over batches"
            )
        keys = [None] * len(self.blocks) if key is None else list(jax.random.split(key, len(self.blocks)))
        h = self.input_conv(_LAYOUT.from_chw(x))
        for block, block_key in zip(self.blocks, keys):
            h = block(h, key=block_key)
        features = jnp.mean(jax.nn.relu(self.output_norm(h)), axis=_LAYOUT.spatial_axes)
        return self.classifier(features)
