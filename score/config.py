"""The architecture of a score network as a frozen, hashable value (docs/method.md §2)."""

import dataclasses
from typing import Literal

from score.layers import LAYOUTS


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """Hyper-parameters of the DDPM++ noise-prediction network.

    The defaults are the paper's CIFAR-10 baseline (score_sde's `ddpmpp`
    config): nf 128, channel multipliers (1, 2, 2, 2), 4 residual blocks per
    level, attention at 16x16, dropout 0.1.

    `num_classes` None or 0 gives an unconditional network (no label embedding).
    `time_scale` multiplies t before the sinusoidal embedding: score_sde feeds
    its continuous VP and subVP models 999 t, the DDPM step index.
    `layout` is where the channel axis lives inside the network; it changes the
    speed, never the parameters or the result (see `score.layers`).
    `reverse_mode` builds the convolutions for fast reverse-mode derivatives of
    any order and no forward mode (`score.layers.Conv2d`); `for_reverse_mode`
    switches a trained network. Same parameters, same results.
    """

    image_size: int
    channels: int
    num_classes: int | None
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    time_scale: float = 999.0
    layout: Literal["channels_last", "channels_first"] = "channels_last"
    reverse_mode: bool = False

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {self.layout!r}")
        if self.image_size % 2 ** (len(self.ch_mult) - 1):
            raise ValueError(f"image_size {self.image_size} does not halve {len(self.ch_mult) - 1} times")
        for width in {self.nf * m for m in self.ch_mult}:
            # GroupNorm uses min(C // 4, 32) groups, which must divide C.
            if width % min(width // 4, 32) or width < 4:
                raise ValueError(f"{width} channels do not split into min(C // 4, 32) groups")

    @property
    def conditional(self) -> bool:
        return bool(self.num_classes)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Feature-map size at each level: image_size, image_size / 2, ..."""
        return tuple(self.image_size // 2**level for level in range(len(self.ch_mult)))
