"""The class-conditional noise-prediction network and its training objective (docs/method.md §2, §3)."""

from score.config import NetConfig
from score.network import ScoreNet, for_reverse_mode
from score.objective import loss
from score.presets import PRESETS

__all__ = ["NetConfig", "PRESETS", "ScoreNet", "for_reverse_mode", "loss"]
