"""The architecture of a WideResNet as a frozen, hashable value (Zagoruyko & Komodakis 2016)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class WRNConfig:
    """WRN-`depth`-`width`: depth = 6 n + 4 convolutions (three groups of n blocks of
    two 3x3 convolutions, plus the input convolution and the groups' three 1x1
    shortcut convolutions), group widths 16 k, 32 k, 64 k for k = `width`.

    `strides` are the first block's stride in each group: (1, 2, 2) for CIFAR-10
    (32 -> 32 -> 16 -> 8). `dropout` sits between the two convolutions of a
    block (the original's best CIFAR-10 result used 0.3).
    """

    depth: int
    width: int
    num_classes: int
    channels: int
    image_size: int
    dropout: float = 0.0
    strides: tuple[int, int, int] = (1, 2, 2)

    def __post_init__(self):
        if self.depth < 10 or (self.depth - 4) % 6:
            raise ValueError(f"depth must be 6 n + 4 with n >= 1, got {self.depth}")
        if self.width < 1 or self.num_classes < 2 or self.channels < 1 or self.image_size < 1:
            raise ValueError(f"width, channels and image_size must be positive and num_classes >= 2: {self}")
        if len(self.strides) != 3 or any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"strides must be three values of 1 or 2, got {self.strides}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        for channels in (16, *self.group_widths):
            # score.layers.GroupNorm uses min(C // 4, 32) groups, which must divide C.
            if channels % min(channels // 4, 32):
                raise ValueError(f"{channels} channels do not split into min(C // 4, 32) groups")

    @property
    def blocks_per_group(self) -> int:
        return (self.depth - 4) // 6

    @property
    def group_widths(self) -> tuple[int, int, int]:
        return 16 * self.width, 32 * self.width, 64 * self.width
