"""The named WideResNets, one per data preset of `experiments.train` (docs/method.md §8).

`digits` is WRN-10-2 at 8x8 (strides 1/1/2: 8 -> 8 -> 8 -> 4), `mnist` and
`fashion-mnist` WRN-16-2 at 28x28 (strides 1/2/2: 28 -> 28 -> 14 -> 7), both
without dropout: short CPU runs. `cifar10` (and `cifar10-deep`, the same
data) is WRN-28-10 with dropout 0.3, the WRN paper's best CIFAR-10 network
(36.5 M parameters, 96.0 % to 96.1 % accuracy). The sbgc paper's baseline is
WRN-28-12: `dataclasses.replace(PRESETS["cifar10"], width=12)`, or
`python -m experiments.train --model wrn --preset cifar10 --wrn-width 12`.
"""

from baseline.config import WRNConfig

_MNIST_SIZED = WRNConfig(depth=16, width=2, num_classes=10, channels=1, image_size=28, strides=(1, 2, 2))
_CIFAR10 = WRNConfig(depth=28, width=10, num_classes=10, channels=3, image_size=32, dropout=0.3)

PRESETS: dict[str, WRNConfig] = {
    "digits": WRNConfig(depth=10, width=2, num_classes=10, channels=1, image_size=8, strides=(1, 1, 2)),
    "mnist": _MNIST_SIZED,
    "fashion-mnist": _MNIST_SIZED,
    "cifar10": _CIFAR10,
    "cifar10-deep": _CIFAR10,
}
