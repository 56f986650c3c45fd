"""Export a training run's evaluated model: a folder that every table's `--run` reads.

    python -m experiments.export --run runs/fashion-mnist --out pretrained/fashion-mnist

The folder gets the run's `config.json` (with where and from which step it was
exported) and `model.eqx`: the EMA model (or the trained one of a run without
EMA) and its step, with the same SHA-256 trailer as a checkpoint, and without
the optimiser's state and the trained parameters, so a quarter of a
checkpoint's size. `experiments.runs.load_run` loads it as the run itself, so
its tables carry the same model fingerprint; it cannot be resumed.
"""

import dataclasses
from pathlib import Path

import jax.numpy as jnp

from experiments import checkpoint
from experiments.cli import option, parse_config
from experiments.runs import Exported, load_run


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    run: Path = option("training run folder (experiments.train --out)", Path("runs/digits"))
    out: Path | None = option("the exported folder (default: pretrained/PRESET)")
    checkpoint: str = option("the checkpoint to export: the last, or a kept one (checkpoints/step_N.eqx)",
                             checkpoint.CHECKPOINT_FILE)


def export(config: ExportConfig) -> Path:
    run = load_run(config.run, config.checkpoint)
    out = config.out or Path("pretrained") / run.config.preset
    if out.resolve() == config.run.resolve():
        raise ValueError(f"--out {out} is the run folder itself: export into another folder")
    record = checkpoint.load_config(config.run)
    record["exported"] = {"from": str(config.run), "checkpoint": config.checkpoint, **run.fingerprint()}
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.save_config(out, record)
    data = checkpoint.serialised(Exported(run.model, jnp.asarray(run.step, jnp.int32)))
    checkpoint.write_checkpoint(out, data, checkpoint.MODEL_FILE)
    return out


def main(argv: list[str] | None = None) -> Path:
    config = parse_config(ExportConfig, argv, prog="python -m experiments.export",
                          description=__doc__.split("\n\n")[0])
    out = export(config)
    print(f"wrote {out / checkpoint.MODEL_FILE} and {out / checkpoint.CONFIG_FILE}")
    return out


if __name__ == "__main__":
    main()
