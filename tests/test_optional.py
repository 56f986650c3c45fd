"""Optional packages: the entry points start, train and evaluate on local-folder data with jax,
equinox, diffrax, optax and numpy alone (and scipy, a dependency of jax), as on a bare
accelerator image; progress lines need no tqdm."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import data
from experiments.optional import MissingPackageError
from experiments.plotting import drawing
from experiments.progress import Lines
from tests.test_data import _images, _write_idx_folder

HIDDEN = ("datasets", "huggingface_hub", "tqdm", "PIL", "matplotlib", "sklearn", "pyarrow", "pandas")
ENTRY_POINTS = ("train", "table1", "table2", "table3", "figure1", "figure2", "figure3", "figure4", "compare",
                "replot")

# Installed as sitecustomize.py, which Python imports at start-up: importing a hidden package
# fails as if it were not installed.
HIDE = f"""
import importlib.abc, sys

class Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HIDDEN!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)

sys.meta_path.insert(0, Hidden())
"""


def test_entry_points_run_without_the_optional_packages(tmp_path):
    """In one fresh process (three would pay JAX's start-up three times): import every entry
    point, then a tiny mnist-preset train and table1 on an IDX folder."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(HIDE)
    labels = np.arange(20) % 10
    data_folder, run, results = tmp_path / "idx", tmp_path / "run", tmp_path / "table1"
    _write_idx_folder(data_folder, {split: (_images(seed, 20, 28, 28, 1), labels)
                                    for seed, split in enumerate(("train", "test"))})
    train_argv = ["--preset", "mnist", "--data", str(data_folder), "--nf", "4", "--ch-mult", "1",
                  "--num-res-blocks", "1", "--steps", "2", "--batch-size", "4", "--log-every", "1",
                  "--samples-per-class", "1", "--out", str(run)]
    table1_argv = ["--run", str(run), "--data", str(data_folder), "--limit", "2", "--probes", "1",
                   "--rtol", "1e-2", "--atol", "1e-2", "--out", str(results)]
    modules = ", ".join(f"experiments.{name}" for name in ENTRY_POINTS)
    script = f"""
import sys, {modules}
loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] in {HIDDEN!r})
print("after imports", loaded())
experiments.train.main({train_argv!r})
experiments.table1.main({table1_argv!r})
print("after the runs", loaded())
"""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.getcwd()]))
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after imports []" in done.stdout and "after the runs []" in done.stdout
    assert "the PIL module is needed for sample grids: pip install pillow" in done.stderr
    assert "train mnist score: 2/2 step" in done.stderr  # progress lines without tqdm
    assert len((run / "log.jsonl").read_text().splitlines()) == 2
    summary = json.loads((results / "table1.json").read_text())
    assert summary["num_images"] == 2 and np.isfinite(summary["bits_per_dim"])


def test_progress_lines_count_rate_and_postfix(capsys):
    lines = Lines(range(3), desc="table1", unit="image", initial=0, interval=0.0)
    for number in lines:
        lines.set_postfix({"accuracy": f"{number / 3:.2f}"})
    printed = capsys.readouterr().err.splitlines()
    assert len(printed) == 3  # after each update; the close does not repeat the last line
    assert printed[-1].startswith("table1: 3/3 image, ") and printed[-1].endswith("image/s, accuracy=0.67")
    quiet = Lines(total=10, desc="train", unit="step", initial=4)  # half a minute between lines
    quiet.update(3)
    quiet.close()
    quiet.close()
    (line,) = capsys.readouterr().err.splitlines()  # only at the first close
    assert line.startswith("train: 7/10 step, ") and line.endswith(" step/s")


def test_a_loader_without_its_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # as if not installed
    with pytest.raises(MissingPackageError, match="the sklearn module is needed for the digits data "
                                                  "set: pip install scikit-learn"):
        data.digits("test")


def test_a_picture_without_matplotlib_is_skipped_and_said(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    @drawing
    def draw(plt, path):
        path.write_text("drawn")

    assert draw(tmp_path / "figure.png") is None and not (tmp_path / "figure.png").exists()
    assert "nothing drawn, the matplotlib module is needed for plots: pip install matplotlib" in capsys.readouterr().err
