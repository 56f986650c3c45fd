"""--device and --precision, and the backend every run and results folder records."""

import json

import jax
import pytest

from experiments import checkpoint, table1, train
from experiments.backend import DeviceUnavailableError
from tests.conftest import TINY_TRAINING
from tests.test_table1 import FAST  # the same compiled solve as table1's tests


@pytest.mark.parametrize("entry_point", [train, table1], ids=lambda m: m.__name__)
def test_a_missing_device_is_refused_before_anything_is_written(entry_point, tmp_path):
    other = "tpu" if jax.default_backend() != "tpu" else "gpu"
    argv = [*TINY_TRAINING, "--steps", "2"] if entry_point is train else ["--run", str(tmp_path / "none")]
    with pytest.raises(DeviceUnavailableError, match=f"--device {other}: JAX runs on {jax.default_backend()}"):
        entry_point.main([*argv, "--out", str(tmp_path / "out"), "--device", other])
    assert not (tmp_path / "out").exists()


def test_runs_and_results_record_where_they_ran(tiny_run, tmp_path):
    recorded = checkpoint.load_config(tiny_run)["backend"]
    assert recorded["backend"] == jax.default_backend() and len(recorded["devices"]) == jax.device_count()
    assert recorded["precision"] == "highest" and recorded["processes"] == 1
    table1.main(["--run", str(tiny_run), "--out", str(tmp_path), *FAST, "--device", jax.default_backend()])
    saved = json.loads((tmp_path / checkpoint.CONFIG_FILE).read_text())
    assert saved["backend"] == recorded and saved["settings"]["precision"] == "highest"
    assert "device" not in saved["settings"]  # where, not what: a resume elsewhere is the same computation


def test_processes_without_a_coordinator_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="--num-processes and --process-id need --coordinator"):
        train.main([*TINY_TRAINING, "--steps", "2", "--out", str(tmp_path / "out"), "--num-processes", "2"])
    assert not (tmp_path / "out").exists()
