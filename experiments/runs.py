"""Read a training run folder back: its settings and its EMA model."""

from pathlib import Path

import jax

import score
from experiments import checkpoint
from experiments.train import TrainConfig, init_state, make_optimizer


def load_run(folder: Path) -> tuple[TrainConfig, score.ScoreNet]:
    """The resolved `TrainConfig` of the run in `folder` and its EMA model (the evaluated one)."""
    record = checkpoint.load_config(folder)
    try:
        config = TrainConfig(**{**record["train"], "out": Path(folder)})
    except (KeyError, TypeError) as error:
        raise checkpoint.CheckpointError(
            f"{folder / checkpoint.CONFIG_FILE}: not a config of experiments.train ({error})"
        ) from error
    optimizer = make_optimizer(config)
    like = jax.eval_shape(lambda: init_state(score.PRESETS[config.preset], config.seed, optimizer))
    return config, checkpoint.load_state(folder, like).ema_model
