"""Primitive layers of the DDPM++ network (docs/method.md §2), written for either layout.

Every layer handles one example's feature map. Where its channel axis lives is
a static `Layout`: XLA on CPU runs channel-last convolutions several times
faster than channel-first ones inside `while_loop`s (every ODE solve), see
docs/cpu.md trap 1, and `benchmarks/network.py`. The parameters do not depend
on the layout (kernels are always stored HWIO), so one set of weights runs in
both.

Initialisation follows score_sde's `default_init`: variance scaling with
fan_avg and a uniform distribution; biases start at zero. Where score_sde asks
for `init_scale=0` (which it turns into a 1e-10 scale) we use exact zeros.
"""

import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


@dataclasses.dataclass(frozen=True)
class Layout:
    """The order of the axes of one example's feature map, e.g. "hwc", and whether the
    convolutions are built for reverse mode (see `Conv2d`)."""

    axes: str
    reverse_mode: bool = False

    @property
    def channel_axis(self) -> int:
        return self.axes.index("c")

    @property
    def spatial_axes(self) -> tuple[int, int]:
        return self.axes.index("h"), self.axes.index("w")

    @property
    def conv_dimension_numbers(self) -> tuple[str, str, str]:
        batched = "N" + self.axes.upper()
        return batched, "HWIO", batched

    def from_chw(self, x: Float[Array, "c h w"]) -> Float[Array, "..."]:
        return jnp.transpose(x, ["chw".index(axis) for axis in self.axes])

    def to_chw(self, x: Float[Array, "..."]) -> Float[Array, "c h w"]:
        return jnp.transpose(x, [self.axes.index(axis) for axis in "chw"])

    def per_channel(self, v: Float[Array, " c"]) -> Float[Array, "..."]:
        """`v` shaped to broadcast along the channel axis of a feature map."""
        return jnp.expand_dims(v, self.spatial_axes)

    def to_tokens(self, x: Float[Array, "..."]) -> Float[Array, "hw c"]:
        """The pixels as rows of channel vectors (a reshape when channel-last)."""
        return jnp.moveaxis(x, self.channel_axis, -1).reshape(-1, x.shape[self.channel_axis])

    def from_tokens(self, tokens: Float[Array, "hw c"], height: int, width: int) -> Float[Array, "..."]:
        return jnp.moveaxis(tokens.reshape(height, width, -1), -1, self.channel_axis)


LAYOUTS = {"channels_last": Layout("hwc"), "channels_first": Layout("chw")}


def _variance_scaling_uniform(
    key: PRNGKeyArray, shape: tuple[int, ...], fan_in: int, fan_out: int, scale: float
) -> Float[Array, "..."]:
    """score_sde's `default_init(scale)`: U(-b, b), b^2 = 3 scale / mean(fan_in, fan_out)."""
    if scale == 0:
        return jnp.zeros(shape)
    bound = math.sqrt(3 * scale / ((fan_in + fan_out) / 2))
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


class Dense(eqx.Module):
    """y = x W + b on the last axis (score_sde's `nn.Dense`, also its `NIN`)."""

    weight: Float[Array, "d_in d_out"]
    bias: Float[Array, " d_out"]

    def __init__(self, d_in: int, d_out: int, *, init_scale: float = 1.0, key: PRNGKeyArray):
        self.weight = _variance_scaling_uniform(key, (d_in, d_out), d_in, d_out, init_scale)
        self.bias = jnp.zeros(d_out)

    def __call__(self, x: Float[Array, "*batch d_in"]) -> Float[Array, "*batch d_out"]:
        return x @ self.weight + self.bias


def _same_conv(x, kernel, dimension_numbers):
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1, 1), padding="SAME", dimension_numbers=dimension_numbers
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_flipped_vjp(x, kernel, dimension_numbers):
    """A stride-1 'same' convolution whose input VJP is again a convolution with an HWIO kernel.

    JAX's own transpose reads the kernel as HWOI, which XLA on CPU runs 25x
    slower inside loops (docs/cpu.md trap 1; 85 against 3.2 ms for a 28x28,
    32-channel layer x 10 in a `fori_loop`). Here the input cotangent is the
    convolution with the spatially flipped kernel, in- and output channels
    swapped: the same numbers, on the fast path. It recurses, so reverse over
    reverse stays fast too. Forward mode (`jax.jvp`) is not available.
    """
    return _same_conv(x, kernel, dimension_numbers)


def _conv_flipped_vjp_forward(x, kernel, dimension_numbers):
    # Through the custom VJP itself, not `_same_conv`: a second derivative differentiates
    # this forward rule, and JAX's own rules there would bring back the slow transpose.
    return _conv_flipped_vjp(x, kernel, dimension_numbers), (x, kernel)


def _conv_flipped_vjp_backward(dimension_numbers, residuals, cotangent):
    x, kernel = residuals
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    _, kernel_vjp = jax.vjp(lambda k: _same_conv(x, k, dimension_numbers), kernel)
    return _conv_flipped_vjp(cotangent, flipped, dimension_numbers), kernel_vjp(cotangent)[0]


_conv_flipped_vjp.defvjp(_conv_flipped_vjp_forward, _conv_flipped_vjp_backward)


class Conv2d(eqx.Module):
    """Stride-1 'same' convolution with bias through `lax.conv_general_dilated`.

    `reverse_mode` picks how its derivative is taken: False, JAX's rules
    (forward mode works; the input VJP is slow inside CPU loops); True, the
    flipped-kernel VJP of `_conv_flipped_vjp` (fast input gradients, no forward
    mode). The two give the same numbers.
    """

    kernel: Float[Array, "kh kw c_in c_out"]
    bias: Float[Array, " c_out"]
    layout: Layout = eqx.field(static=True)

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        layout: Layout,
        *,
        init_scale: float = 1.0,
        key: PRNGKeyArray,
    ):
        receptive_field = kernel_size * kernel_size
        self.kernel = _variance_scaling_uniform(
            key,
            (kernel_size, kernel_size, c_in, c_out),
            c_in * receptive_field,
            c_out * receptive_field,
            init_scale,
        )
        self.bias = jnp.zeros(c_out)
        self.layout = layout

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        conv = _conv_flipped_vjp if self.layout.reverse_mode else _same_conv
        y = conv(x[None], self.kernel, self.layout.conv_dimension_numbers)[0]
        return y + self.layout.per_channel(self.bias)


class GroupNorm(eqx.Module):
    """GroupNorm with min(C // 4, 32) groups and eps 1e-6, affine (docs/method.md §2)."""

    weight: Float[Array, " c"]
    bias: Float[Array, " c"]
    groups: int = eqx.field(static=True)
    layout: Layout = eqx.field(static=True)

    def __init__(self, channels: int, layout: Layout):
        self.weight = jnp.ones(channels)
        self.bias = jnp.zeros(channels)
        self.groups = min(channels // 4, 32)
        self.layout = layout

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        # The statistics reduce over the pixels with the channel axis kept where it is (a
        # cheap reduction in either layout), and are combined into groups on C-vectors; the
        # normalisation and affine map then fold into one multiply-add per element with
        # per-channel coefficients. Against normalising the grouped map and applying the
        # affine map after it, this took 10 % off the fashion-mnist forward pass and 16 % off
        # the forward with one JVP (results/fashion-mnist/benchmark_group_norm/). The
        # variance is the two-pass one, stable when the mean is large beside the spread.
        axis = self.layout.channel_axis
        channels = x.shape[axis]
        pixels = tuple(i for i in range(x.ndim) if i != axis)
        per_group = lambda per_channel: jnp.repeat(
            jnp.mean(per_channel.reshape(self.groups, channels // self.groups), axis=1),
            channels // self.groups)
        mean = per_group(jnp.mean(x, axis=pixels))
        variance = per_group(jnp.mean(jnp.square(x - self.layout.per_channel(mean)), axis=pixels))
        scale = self.weight * jax.lax.rsqrt(variance + 1e-6)
        return x * self.layout.per_channel(scale) + self.layout.per_channel(self.bias - mean * scale)


def dropout(x: Float[Array, "..."], rate: float, key: PRNGKeyArray | None) -> Float[Array, "..."]:
    """Inverted dropout; the identity without a key (evaluation)."""
    if key is None or rate == 0:
        return x
    keep = jax.random.bernoulli(key, 1 - rate, x.shape)
    return jnp.where(keep, x / (1 - rate), 0.0)


def upsample_nearest(x: Float[Array, "..."], layout: Layout) -> Float[Array, "..."]:
    """score_sde's `naive_upsample_2d`: repeat every pixel 2 x 2."""
    for axis in layout.spatial_axes:
        x = jnp.repeat(x, 2, axis=axis)
    return x


def downsample_mean(x: Float[Array, "..."], layout: Layout) -> Float[Array, "..."]:
    """score_sde's `naive_downsample_2d`: mean over 2 x 2 pixel blocks."""
    height_axis, width_axis = layout.spatial_axes
    shape = list(x.shape)
    # Spatial axes are adjacent in both layouts; split each into (n // 2, 2).
    shape[width_axis : width_axis + 1] = [shape[width_axis] // 2, 2]
    shape[height_axis : height_axis + 1] = [shape[height_axis] // 2, 2]
    return jnp.mean(x.reshape(shape), axis=(height_axis + 1, width_axis + 2))
