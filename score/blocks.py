"""Blocks of the DDPM++ network (docs/method.md §2): embeddings, residual and attention blocks.

They mirror score_sde's `ResnetBlockBigGANpp` and `AttnBlockpp` with
skip_rescale=True and fir=False, plus the paper's class conditioning: a label
embedding that enters every residual block through its own Dense layer, next
to the time term.
"""

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from score.layers import Conv2d, Dense, GroupNorm, Layout, downsample_mean, dropout, upsample_nearest

Resample = Literal["up", "down"] | None


def sinusoidal_embedding(time: Float[Array, ""], dim: int) -> Float[Array, " dim"]:
    """DDPM's positional embedding: sin and cos of time * exp(-k ln(1e4) / (dim/2 - 1))."""
    half = dim // 2
    frequencies = jnp.exp(-math.log(10_000) / (half - 1) * jnp.arange(half))
    angles = time * frequencies
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


class EmbeddingMLP(eqx.Module):
    """Dense(d_in -> d), swish, Dense(d -> d): the time and the label embeddings."""

    first: Dense
    second: Dense

    def __init__(self, d_in: int, d_out: int, *, key: PRNGKeyArray):
        first_key, second_key = jax.random.split(key)
        self.first = Dense(d_in, d_out, key=first_key)
        self.second = Dense(d_out, d_out, key=second_key)

    def __call__(self, features: Float[Array, " d_in"]) -> Float[Array, " d_out"]:
        return self.second(jax.nn.swish(self.first(features)))


class ResnetBlock(eqx.Module):
    """BigGAN-style residual block, optionally resampling by 2 (score_sde's ResnetBlockBigGANpp).

    h = conv3(swish(GN(x))) [resampled first], h += Dense(swish(temb)) [+ Dense(swish(yemb))],
    h = conv3(dropout(swish(GN(h)))), out = (skip(x) + h) / sqrt(2), where the skip is
    a 1x1 convolution when channels or resolution change.
    """

    in_norm: GroupNorm
    in_conv: Conv2d
    time_projection: Dense
    label_projection: Dense | None
    out_norm: GroupNorm
    out_conv: Conv2d
    skip_conv: Conv2d | None
    resample: Resample = eqx.field(static=True)
    dropout_rate: float = eqx.field(static=True)
    layout: Layout = eqx.field(static=True)

    def __init__(
        self,
        c_in: int,
        c_out: int,
        embedding_dim: int,
        layout: Layout,
        *,
        conditional: bool,
        dropout_rate: float,
        resample: Resample = None,
        key: PRNGKeyArray,
    ):
        if resample not in (None, "up", "down"):
            raise ValueError(f"resample must be None, 'up' or 'down', got {resample!r}")
        in_key, time_key, label_key, out_key, skip_key = jax.random.split(key, 5)
        self.in_norm = GroupNorm(c_in, layout)
        self.in_conv = Conv2d(c_in, c_out, 3, layout, key=in_key)
        self.time_projection = Dense(embedding_dim, c_out, key=time_key)
        self.label_projection = Dense(embedding_dim, c_out, key=label_key) if conditional else None
        self.out_norm = GroupNorm(c_out, layout)
        # Zero-initialised: every block starts as the (rescaled) identity.
        self.out_conv = Conv2d(c_out, c_out, 3, layout, init_scale=0.0, key=out_key)
        needs_skip_conv = c_in != c_out or resample is not None
        self.skip_conv = Conv2d(c_in, c_out, 1, layout, key=skip_key) if needs_skip_conv else None
        self.resample = resample
        self.dropout_rate = dropout_rate
        self.layout = layout

    def _resample(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        if self.resample == "up":
            return upsample_nearest(x, self.layout)
        if self.resample == "down":
            return downsample_mean(x, self.layout)
        return x

    def __call__(
        self,
        x: Float[Array, "..."],
        time_features: Float[Array, " e"],
        label_features: Float[Array, " e"] | None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "..."]:
        """`time_features` and `label_features` are the embeddings after swish."""
        h = self._resample(jax.nn.swish(self.in_norm(x)))
        x = self._resample(x)
        h = self.in_conv(h)
        conditioning = self.time_projection(time_features)
        if self.label_projection is not None:
            conditioning = conditioning + self.label_projection(label_features)
        h = h + self.layout.per_channel(conditioning)
        h = dropout(jax.nn.swish(self.out_norm(h)), self.dropout_rate, key)
        h = self.out_conv(h)
        if self.skip_conv is not None:
            x = self.skip_conv(x)
        return (x + h) / math.sqrt(2)


class AttentionBlock(eqx.Module):
    """Single-head self-attention over all pixels (score_sde's AttnBlockpp, skip_rescale)."""

    norm: GroupNorm
    query: Dense
    key_projection: Dense
    value: Dense
    output: Dense
    layout: Layout = eqx.field(static=True)

    def __init__(self, channels: int, layout: Layout, *, key: PRNGKeyArray):
        query_key, key_key, value_key, output_key = jax.random.split(key, 4)
        self.norm = GroupNorm(channels, layout)
        # score_sde's NIN layers: init scale 0.1 for q, k, v, zero for the output.
        self.query = Dense(channels, channels, init_scale=0.1, key=query_key)
        self.key_projection = Dense(channels, channels, init_scale=0.1, key=key_key)
        self.value = Dense(channels, channels, init_scale=0.1, key=value_key)
        self.output = Dense(channels, channels, init_scale=0.0, key=output_key)
        self.layout = layout

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        height, width = (x.shape[axis] for axis in self.layout.spatial_axes)
        tokens = self.layout.to_tokens(self.norm(x))
        query, key, value = self.query(tokens), self.key_projection(tokens), self.value(tokens)
        weights = jax.nn.softmax(query @ key.T / math.sqrt(tokens.shape[-1]), axis=-1)
        h = self.output(weights @ value)
        return (x + self.layout.from_tokens(h, height, width)) / math.sqrt(2)
