"""The named network configurations, all in one place (docs/method.md §2, docs/cpu.md).

`cifar10` is the paper's baseline (67,194,499 parameters) and `cifar10-deep`
its 8-block variant; `digits` (201,697 parameters), `mnist` (349,025)
and `fashion-mnist` (1,384,641) are the same architecture with fewer channels and
levels, sized for CPU training. Every preset is class-conditional; use
`dataclasses.replace(config, num_classes=None)` for an unconditional network.
"""

import dataclasses

from score.config import NetConfig

# 28 -> 14 -> 7, attention at the 7x7 level. Sized so that its training fits in about two
# hours on 2 CPU cores (benchmarks/README.md, `benchmarks.train`): nf 32 with 2 blocks per
# level took 3.6 s per step of 128 images, this 0.98 s.
_MNIST_SIZED = NetConfig(
    image_size=28, channels=1, num_classes=10, nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(7,)
)

PRESETS: dict[str, NetConfig] = {
    "cifar10": NetConfig(image_size=32, channels=3, num_classes=10),
    "cifar10-deep": NetConfig(image_size=32, channels=3, num_classes=10, num_res_blocks=8),
    # 8 -> 4; the middle block's attention already runs at 4x4.
    "digits": NetConfig(
        image_size=8, channels=1, num_classes=10, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()
    ),
    "mnist": _MNIST_SIZED,
    # Twice the channels: at equal steps 75.7 % against 65.7 % for nf 16 on 300 test images
    # (results/fashion-mnist/study/README.md); its study arm peaked at 0.35 steps of 128 per
    # second on 2 cores, beside other jobs.
    "fashion-mnist": dataclasses.replace(_MNIST_SIZED, nf=32),
}
