"""Optional packages: the entry points start, train and evaluate on local-folder data with jax,
equinox, diffrax, optax and numpy alone (and scipy, a dependency of jax), as on a bare
accelerator image; progress lines need no tqdm."""

import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import data
from experiments.images import save_grid
from experiments.optional import MissingPackageError
from experiments.plotting import drawing
from experiments.progress import Lines
from tests.conftest import CACHE_VARIABLE
from tests.test_device_check import check_toy_summary

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


def test_entry_points_and_the_device_check_run_without_the_optional_packages(tmp_path):
    """In one fresh process (each costs JAX's start-up and its compiles): import every entry
    point, then run the device check's toy mode (`python -m benchmarks.device_check --toy`:
    train, resume and table1 on CIFAR-10-format data at two precisions), as on a bare
    accelerator image; the summary's values are checked."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(HIDE)
    out = tmp_path / "out"
    modules = ", ".join(f"experiments.{name}" for name in ENTRY_POINTS)
    script = f"""
import sys, {modules}, benchmarks.device_check
loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] in {HIDDEN!r})
print("after imports", loaded())
benchmarks.device_check.main(["--toy", "--out", {str(out)!r}])
print("after the runs", loaded())
"""
    # Most of the time is compiling: one CPU device (no partitioned programs) and LLVM at -O0
    # halve it, and the toy's few evaluations hardly notice the slower code.
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.getcwd()]),
                       SBGC_COMPILATION_CACHE=os.environ.get(CACHE_VARIABLE, str(tmp_path / "cache")),
                       JAX_NUM_CPU_DEVICES="1",
                       XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0")
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after imports []" in done.stdout and "after the runs []" in done.stdout
    assert "train cifar10 score: 2/2 step" in done.stderr  # progress lines without tqdm
    check_toy_summary(out)


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


def test_a_sample_grid_without_pillow_is_skipped_and_said(monkeypatch, tmp_path, capsys):
    for name in ("PIL", "PIL.Image", "PIL.ImageDraw"):  # as if not installed, though imported before
        monkeypatch.setitem(sys.modules, name, None)
    save_grid(tmp_path / "grid.png", np.zeros((1, 2, 4, 4, 1), np.uint8))
    assert not (tmp_path / "grid.png").exists()
    assert "the PIL module is needed for sample grids: pip install pillow" in capsys.readouterr().err


def test_a_picture_without_matplotlib_is_skipped_and_said(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    @drawing
    def draw(plt, path):
        path.write_text("drawn")

    assert draw(tmp_path / "figure.png") is None and not (tmp_path / "figure.png").exists()
    assert "nothing drawn, the matplotlib module is needed for plots: pip install matplotlib" in capsys.readouterr().err
