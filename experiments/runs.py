"""Read a training run folder back: its settings, its evaluated model and the model's fingerprint."""

import hashlib
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np

from experiments import checkpoint
from experiments.training import Network, TrainConfig, init_state, make_optimizer, network_config


class Run(NamedTuple):
    """A trained run: its resolved settings, its evaluated model, its step.

    The evaluated model is the EMA model, or the trained one for a run without
    EMA (`--ema-decay 0`, the WideResNets' default). `config.model` says which
    kind it is: "score" (a `score.ScoreNet`) or "wrn" (a `baseline.WideResNet`).
    """

    config: TrainConfig
    model: Network
    step: int

    @property
    def label(self) -> str:
        """How the tables name the model: "sbgc", or the WideResNet's "WRN-depth-width"."""
        if self.config.model == "wrn":
            return f"WRN-{self.model.config.depth}-{self.model.config.width}"
        return "sbgc"

    def require_likelihood(self, what: str) -> None:
        """Refuse a discriminative run where `what` needs log p(x | y)."""
        if self.config.model != "score":
            raise ValueError(f"{what} needs a likelihood, and {self.config.out} is a discriminative "
                             f"run ({self.label}); give it a score run")

    def fingerprint(self) -> dict:
        """What identifies the evaluated model: results folders record it and refuse to mix
        results of two models (say, after `train --resume --steps N` in the same folder)."""
        digest = hashlib.sha1()
        for leaf in jax.tree.leaves(eqx.filter(self.model, eqx.is_array)):
            digest.update(np.ascontiguousarray(leaf).tobytes())
        return {"step": self.step, "parameters_sha1": digest.hexdigest()}


def load_run(folder: Path | str, checkpoint_name: str = checkpoint.CHECKPOINT_FILE) -> Run:
    """The run in `folder`, read from its config.json and its last checkpoint (or the kept
    checkpoint `checkpoint_name`)."""
    folder = Path(folder)
    record = checkpoint.load_config(folder)
    try:
        config = TrainConfig(**{**record["train"], "out": folder})
    except (KeyError, TypeError) as error:
        raise checkpoint.CheckpointError(
            f"{folder / checkpoint.CONFIG_FILE}: not a config of experiments.train ({error})"
        ) from error
    optimizer = make_optimizer(config)
    like = jax.eval_shape(lambda: init_state(network_config(config), config.seed, optimizer))
    state = checkpoint.load_state(folder, like, checkpoint_name)
    return Run(config, state.ema_model, int(state.step))
