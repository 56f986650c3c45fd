"""A discriminative baseline: a pre-activation WideResNet and its cross-entropy objective (docs/method.md §8)."""

from baseline.config import WRNConfig
from baseline.network import WideResNet
from baseline.objective import loss, random_crop
from baseline.presets import PRESETS

__all__ = ["PRESETS", "WRNConfig", "WideResNet", "loss", "random_crop"]
