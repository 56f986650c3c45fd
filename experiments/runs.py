"""Read a training run folder back: its settings, its EMA model and the model's fingerprint."""

import hashlib
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np

import score
from experiments import checkpoint
from experiments.train import TrainConfig, init_state, make_optimizer


class Run(NamedTuple):
    """A trained run: its resolved settings, its EMA model (the evaluated one), its step."""

    config: TrainConfig
    model: score.ScoreNet
    step: int

    def fingerprint(self) -> dict:
        """What identifies the evaluated model: results folders record it and refuse to mix
        results of two models (say, after `train --resume --steps N` in the same folder)."""
        digest = hashlib.sha1()
        for leaf in jax.tree.leaves(eqx.filter(self.model, eqx.is_array)):
            digest.update(np.ascontiguousarray(leaf).tobytes())
        return {"step": self.step, "parameters_sha1": digest.hexdigest()}


def load_run(folder: Path) -> Run:
    """The run in `folder`, read from its config.json and checkpoint."""
    record = checkpoint.load_config(folder)
    try:
        config = TrainConfig(**{**record["train"], "out": Path(folder)})
    except (KeyError, TypeError) as error:
        raise checkpoint.CheckpointError(
            f"{folder / checkpoint.CONFIG_FILE}: not a config of experiments.train ({error})"
        ) from error
    optimizer = make_optimizer(config)
    like = jax.eval_shape(lambda: init_state(score.PRESETS[config.preset], config.seed, optimizer))
    state = checkpoint.load_state(folder, like)
    return Run(config, state.ema_model, int(state.step))
