"""The class-conditional DDPM++ noise-prediction network (docs/method.md §2).

A U-Net after score_sde's `ncsnpp` model with the `ddpmpp` settings
(resblock_type 'biggan', skip_rescale, fir off, progressive 'none'): an input
convolution, per level `num_res_blocks` residual blocks (with attention where
the resolution is listed) and a down-sampling block between levels, every
output kept as a skip; a middle of block, attention, block; per level
`num_res_blocks + 1` blocks on concat(h, skip), attention, an up-sampling
block between levels; a zero-initialised GroupNorm-swish-conv head.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from score.blocks import AttentionBlock, EmbeddingMLP, ResnetBlock, sinusoidal_embedding
from score.config import NetConfig
from score.layers import LAYOUTS, Conv2d, GroupNorm, Layout

# One example's features in the network's internal layout ("h w c" or "c h w").
FeatureMap = Float[Array, "..."]
Embedding = Float[Array, " e"]


def _split_or_none(key: PRNGKeyArray | None, count: int) -> list[PRNGKeyArray | None]:
    """Dropout keys for `count` blocks; all None (no dropout) without a key."""
    return [None] * count if key is None else list(jax.random.split(key, count))


class DownLevel(eqx.Module):
    """The residual blocks of one resolution, then (except at the bottom) a halving block."""

    blocks: list[ResnetBlock]
    attentions: list[AttentionBlock] | None
    downsample: ResnetBlock | None

    def __call__(
        self,
        h: FeatureMap,
        time_features: Embedding,
        label_features: Embedding | None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> list[FeatureMap]:
        """Every intermediate output, each of which the up path reuses as a skip."""
        keys = _split_or_none(key, len(self.blocks) + 1)
        outputs = []
        for i, block in enumerate(self.blocks):
            h = block(h, time_features, label_features, key=keys[i])
            if self.attentions is not None:
                h = self.attentions[i](h)
            outputs.append(h)
        if self.downsample is not None:
            outputs.append(self.downsample(h, time_features, label_features, key=keys[-1]))
        return outputs


class UpLevel(eqx.Module):
    """Residual blocks on concat(h, skip), attention, then (except at the top) a doubling block."""

    blocks: list[ResnetBlock]
    attention: AttentionBlock | None
    upsample: ResnetBlock | None
    layout: Layout = eqx.field(static=True)

    def __call__(
        self,
        h: FeatureMap,
        skips: list[FeatureMap],
        time_features: Embedding,
        label_features: Embedding | None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> FeatureMap:
        """Consumes `len(self.blocks)` skips from the end of `skips`."""
        keys = _split_or_none(key, len(self.blocks) + 1)
        for block, block_key in zip(self.blocks, keys):
            h = jnp.concatenate([h, skips.pop()], axis=self.layout.channel_axis)
            h = block(h, time_features, label_features, key=block_key)
        if self.attention is not None:
            h = self.attention(h)
        if self.upsample is not None:
            h = self.upsample(h, time_features, label_features, key=keys[-1])
        return h


class ScoreNet(eqx.Module):
    """eps_hat(x, t, y): predicts the noise z of x = alpha(t) x0 + sigma(t) z (docs/method.md §2).

    The score is s(x, t, y) = -eps_hat / sigma(t). Built from a `NetConfig`,
    e.g. `ScoreNet(PRESETS["digits"], key=key)`; call it on one example and
    `jax.vmap` over a batch.

    A fresh network predicts exactly zero noise: as in DDPM++, its output
    layers start at zero (docs/method.md §2.6), so every label gets the same
    log p(x | y) until it is trained (or its parameters perturbed, as the
    tests do). A classifier of a fresh network ties on every image.
    """

    time_embedding: EmbeddingMLP
    label_embedding: EmbeddingMLP | None
    input_conv: Conv2d
    down_levels: list[DownLevel]
    middle_in: ResnetBlock
    middle_attention: AttentionBlock
    middle_out: ResnetBlock
    up_levels: list[UpLevel]
    output_norm: GroupNorm
    output_conv: Conv2d
    config: NetConfig = eqx.field(static=True)

    def __init__(self, config: NetConfig, *, key: PRNGKeyArray):
        layout = dataclasses.replace(LAYOUTS[config.layout], reverse_mode=config.reverse_mode)
        embedding_dim = 4 * config.nf
        keys = iter(jax.random.split(key, 7))

        def resnet_block(c_in, c_out, block_key, resample=None):
            return ResnetBlock(
                c_in,
                c_out,
                embedding_dim,
                layout,
                conditional=config.conditional,
                dropout_rate=config.dropout,
                resample=resample,
                key=block_key,
            )

        self.time_embedding = EmbeddingMLP(config.nf, embedding_dim, key=next(keys))
        label_key = next(keys)
        self.label_embedding = (
            EmbeddingMLP(config.num_classes, embedding_dim, key=label_key) if config.conditional else None
        )
        self.input_conv = Conv2d(config.channels, config.nf, 3, layout, key=next(keys))

        num_levels = len(config.ch_mult)
        skip_channels = [config.nf]
        c = config.nf
        self.down_levels = []
        for level, level_key in enumerate(jax.random.split(next(keys), num_levels)):
            block_keys = iter(jax.random.split(level_key, 2 * config.num_res_blocks + 1))
            c_out = config.nf * config.ch_mult[level]
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append(resnet_block(c, c_out, next(block_keys)))
                c = c_out
                skip_channels.append(c)
            with_attention = config.resolutions[level] in config.attn_resolutions
            attentions = (
                [AttentionBlock(c, layout, key=next(block_keys)) for _ in blocks] if with_attention else None
            )
            downsample = None
            if level < num_levels - 1:
                downsample = resnet_block(c, c, next(block_keys), resample="down")
                skip_channels.append(c)
            self.down_levels.append(DownLevel(blocks, attentions, downsample))

        middle_keys = jax.random.split(next(keys), 3)
        self.middle_in = resnet_block(c, c, middle_keys[0])
        self.middle_attention = AttentionBlock(c, layout, key=middle_keys[1])
        self.middle_out = resnet_block(c, c, middle_keys[2])

        self.up_levels = []
        for level, level_key in zip(reversed(range(num_levels)), jax.random.split(next(keys), num_levels)):
            block_keys = iter(jax.random.split(level_key, config.num_res_blocks + 3))
            c_out = config.nf * config.ch_mult[level]
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(resnet_block(c + skip_channels.pop(), c_out, next(block_keys)))
                c = c_out
            with_attention = config.resolutions[level] in config.attn_resolutions
            attention = AttentionBlock(c, layout, key=next(block_keys)) if with_attention else None
            upsample = resnet_block(c, c, next(block_keys), resample="up") if level > 0 else None
            self.up_levels.append(UpLevel(blocks, attention, upsample, layout))

        self.output_norm = GroupNorm(c, layout)
        self.output_conv = Conv2d(c, config.channels, 3, layout, init_scale=0.0, key=next(keys))
        self.config = config

    def __call__(
        self,
        x: Float[Array, "c h w"],
        t: Float[Array, ""],
        y: Int[Array, ""],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "c h w"]:
        """Noise prediction for one image; `y` is ignored by an unconditional network.

        Dropout is on only when a `key` is given (training).
        """
        expected_shape = (self.config.channels, self.config.image_size, self.config.image_size)
        if x.shape != expected_shape:
            c, h, w = expected_shape
            hint = ("that is h w c: move the channel axis first (likelihood.channels_first)"
                    if x.shape == (h, w, c) else "vmap over batches")
            raise ValueError(f"expected one image of shape {expected_shape} (c h w), got {x.shape}; {hint}")
        if self.label_embedding is not None and not isinstance(y, jax.core.Tracer):
            # one_hot would turn a label out of range into a "null label" without a word. Traced
            # labels are checked once per solve by `classify`, not at every evaluation.
            if jnp.ndim(y) != 0 or not 0 <= int(y) < self.config.num_classes:
                raise ValueError(f"the label must be one integer in [0, {self.config.num_classes}), got {y}")
        layout = LAYOUTS[self.config.layout]
        time_features = self.time_embedding(sinusoidal_embedding(self.config.time_scale * t, self.config.nf))
        time_features = jax.nn.swish(time_features)
        label_features = None
        if self.label_embedding is not None:
            label_features = jax.nn.swish(self.label_embedding(jax.nn.one_hot(y, self.config.num_classes)))

        num_levels = len(self.down_levels)
        keys = _split_or_none(key, 2 * num_levels + 2)
        down_keys, up_keys = keys[:num_levels], keys[num_levels : 2 * num_levels]
        middle_in_key, middle_out_key = keys[2 * num_levels :]

        skips = [self.input_conv(layout.from_chw(x))]
        for level, level_key in zip(self.down_levels, down_keys):
            skips.extend(level(skips[-1], time_features, label_features, key=level_key))

        h = self.middle_in(skips[-1], time_features, label_features, key=middle_in_key)
        h = self.middle_attention(h)
        h = self.middle_out(h, time_features, label_features, key=middle_out_key)

        for level, level_key in zip(self.up_levels, up_keys):
            h = level(h, skips, time_features, label_features, key=level_key)

        h = self.output_conv(jax.nn.swish(self.output_norm(h)))
        return layout.to_chw(h)


def for_reverse_mode(model: ScoreNet) -> ScoreNet:
    """The same network (same parameters, same outputs) with convolutions built for
    reverse mode: input gradients of any order run on XLA's fast convolutions
    (docs/cpu.md trap 1), but `jax.jvp` no longer works, so divergences need
    `Hutchinson(..., mode="reverse")`. For attacks (`attacks/`) on CPU."""
    config = dataclasses.replace(model.config, reverse_mode=True)
    skeleton = eqx.filter_eval_shape(ScoreNet, config, key=jax.random.key(0))
    return jax.tree.unflatten(jax.tree.structure(skeleton), jax.tree.leaves(model))
