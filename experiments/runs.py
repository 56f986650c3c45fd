"""Read a training run folder back: its settings, its evaluated model and the model's fingerprint."""

import hashlib
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Int

from experiments import checkpoint
from experiments.training import Network, NetworkConfig, TrainConfig, init_state, make_optimizer, network_config


class Run(NamedTuple):
    """A trained run: its resolved settings, its evaluated model, its step.

    The evaluated model is the EMA model, or the trained one for a run without
    EMA (`--ema-decay 0`, the WideResNets' default): a `score.ScoreNet` or a
    `baseline.WideResNet`. `experiments.estimates.classifier_of` turns it into
    the classifier the tables evaluate.
    """

    config: TrainConfig
    model: Network
    step: int

    def fingerprint(self) -> dict:
        """What identifies the evaluated model: results folders record it and refuse to mix
        results of two models (say, after `train --resume --steps N` in the same folder)."""
        digest = hashlib.sha1()
        for leaf in jax.tree.leaves(eqx.filter(self.model, eqx.is_array)):
            digest.update(np.ascontiguousarray(leaf).tobytes())
        return {"step": self.step, "parameters_sha1": digest.hexdigest()}


def saved_network(record: dict, config: TrainConfig) -> NetworkConfig:
    """The network a run was made with, as its config.json says: a preset may have changed
    since (fashion-mnist went from nf 16 to 32). Runs older than that record: the preset's."""
    if "network" not in record:
        return network_config(config)
    fields = {name: tuple(value) if isinstance(value, list) else value for name, value in record["network"].items()}
    try:
        return type(network_config(config))(**fields)
    except TypeError as error:
        raise checkpoint.CheckpointError(f"{config.out / checkpoint.CONFIG_FILE}: network: {error}") from error


class Exported(eqx.Module):
    """What `experiments.export` writes as model.eqx: a run's evaluated model and its step,
    without the trained parameters and the optimiser's state (a quarter of a checkpoint)."""

    model: Network
    step: Int[Array, ""]


def load_run(folder: Path | str, checkpoint_name: str = checkpoint.CHECKPOINT_FILE) -> Run:
    """The run in `folder`, read from its config.json and its last checkpoint (or the kept
    checkpoint `checkpoint_name`), or an exported model's folder, from its model.eqx."""
    folder = Path(folder)
    record = checkpoint.load_config(folder)
    try:
        config = TrainConfig(**{**record["train"], "out": folder})
    except (KeyError, TypeError) as error:
        raise checkpoint.CheckpointError(
            f"{folder / checkpoint.CONFIG_FILE}: not a config of experiments.train ({error})"
        ) from error
    optimizer = make_optimizer(config)
    like = jax.eval_shape(lambda: init_state(saved_network(record, config), config.seed, optimizer))
    if checkpoint_name == checkpoint.CHECKPOINT_FILE and (folder / checkpoint.MODEL_FILE).is_file():
        exported = checkpoint.load_state(folder, Exported(like.ema_model, like.step), checkpoint.MODEL_FILE)
        return Run(config, exported.model, int(exported.step))
    state = checkpoint.load_state(folder, like, checkpoint_name)
    return Run(config, state.ema_model, int(state.step))
