"""The catalogue of bad input at the entry points (README, "Bad input"): each is a clear error
that names the problem, raised before anything of the run or its results is changed."""

import re
import shutil

import numpy as np
import pytest

from experiments import checkpoint, compare, replot, table1, table2, table3, train
from tests.conftest import TINY_TRAINING


def copy_of(run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    return folder


def flip_a_byte(run, tmp_path):
    folder = copy_of(run, tmp_path)
    data = bytearray((folder / checkpoint.CHECKPOINT_FILE).read_bytes())
    data[len(data) // 3] ^= 0xFF
    (folder / checkpoint.CHECKPOINT_FILE).write_bytes(bytes(data))
    return folder


# (name, entry point, argv with RUN and OUT for the tiny run's copy and a results folder,
#  what to do to the run first, exception, message)
CASES = [
    ("unknown preset", train.main, ["--preset", "digitz"], None, SystemExit, None),
    ("unknown model", train.main, ["--model", "vit"], None, SystemExit, None),
    ("missing run folder", table1.main, ["--run", "RUN/nothing"], None,
     checkpoint.CheckpointError, r"config\.json: missing; is .* a run folder of experiments\.train"),
    ("a run folder of another preset", train.main,
     [*TINY_TRAINING, "--preset", "fashion-mnist", "--out", "RUN", "--resume", "--steps", "6"], None,
     checkpoint.CheckpointError, r"train\.preset: saved 'digits', now 'fashion-mnist'"),
    ("corrupted checkpoint", train.main, [*TINY_TRAINING, "--out", "RUN", "--resume", "--steps", "6"],
     flip_a_byte, checkpoint.CheckpointError, r"checkpoint\.eqx: corrupted \(its SHA-256"),
    ("corrupted checkpoint at evaluation", table1.main, ["--run", "RUN", "--out", "OUT"], flip_a_byte,
     checkpoint.CheckpointError, r"checkpoint\.eqx: corrupted"),
    ("--limit 0", table1.main, ["--run", "RUN", "--out", "OUT", "--limit", "0"], None,
     ValueError, "--limit must be at least 1, got 0"),
    ("negative --limit", table2.main, ["--run", "RUN", "--out", "OUT", "--limit", "-3"], None,
     ValueError, "--limit must be at least 1, got -3"),
    ("--probes 0", table1.main, ["--run", "RUN", "--out", "OUT", "--probes", "0"], None,
     ValueError, "--probes must be at least 1, got 0"),
    ("--images-per-solve 0", table1.main, ["--run", "RUN", "--out", "OUT", "--images-per-solve", "0"],
     None, ValueError, "--images-per-solve must be at least 1, got 0"),
    ("--images-per-batch 0", table3.main, ["--run", "RUN", "--out", "OUT", "--images-per-batch", "0"],
     None, ValueError, "--images-per-batch must be at least 1, got 0"),
    ("unknown corruption", table2.main, ["--run", "RUN", "--out", "OUT", "--corruptions", "frost"], None,
     ValueError, "unknown 'frost' \\(left out"),
    ("--log-every 0", train.main, [*TINY_TRAINING, "--out", "OUT", "--log-every", "0"], None,
     ValueError, "--log-every must be at least 1, got 0"),
    ("--checkpoint-every 0", train.main, [*TINY_TRAINING, "--out", "OUT", "--checkpoint-every", "0"], None,
     ValueError, "--checkpoint-every must be at least 1, got 0"),
    ("negative --steps", train.main, [*TINY_TRAINING, "--out", "OUT", "--steps", "-5"], None,
     ValueError, "--steps must be at least 1, got -5"),
    ("--batch-size 0", train.main, [*TINY_TRAINING, "--out", "OUT", "--batch-size", "0"], None,
     ValueError, "--batch-size must be at least 1, got 0"),
    ("--resume with --steps behind the checkpoint", train.main,
     [*TINY_TRAINING, "--out", "RUN", "--resume", "--steps", "2"], None,
     checkpoint.CheckpointError, r"is at step 4, past --steps 2: give --steps 4 or more"),
    ("--rtol 0", table1.main, ["--run", "RUN", "--out", "OUT", "--rtol", "0", "--atol", "0"], None,
     ValueError, "--rtol must be above 0, got 0.0"),
    ("--limit past the test split", table1.main, ["--run", "RUN", "--out", "OUT", "--limit", "100000"], None,
     ValueError, "--limit 100000 is more than the 360 test images: leave it out"),
    ("a missing run folder to compare", compare.main, ["--runs", "RUN/nothing,RUN", "--out", "OUT"], None,
     FileNotFoundError, r"--runs: .*nothing: no such run folder"),
    ("a folder replot cannot draw", replot.main, ["--folders", "RUN/samples"], None,
     FileNotFoundError, r"none of figure1\.json, figure2\.json, examples\.npz, checkpoint\.eqx"),
]


def test_data_of_another_image_size_is_named(tmp_path):
    """An IDX folder of 8x8 images given to the 28x28 mnist preset."""
    from tests.test_data import _images, _write_idx_folder

    images = _images(0, 20, 8, 8, 1)
    _write_idx_folder(tmp_path / "idx", {s: (images, np.arange(20) % 10) for s in ("train", "test")})
    with pytest.raises(ValueError, match=r"preset mnist expects images \(28, 28, 1\), the data has \(8, 8, 1\)"):
        train.main(["--preset", "mnist", "--data", str(tmp_path / "idx"), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run" / checkpoint.CHECKPOINT_FILE).exists()


@pytest.mark.parametrize("name, entry, argv, damage, error, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_named_and_changes_nothing(name, entry, argv, damage, error, message, tiny_run,
                                                tmp_path, capsys):
    run = damage(tiny_run, tmp_path) if damage else copy_of(tiny_run, tmp_path)
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    out = tmp_path / "results"
    argv = [a.replace("RUN", str(run)).replace("OUT", str(out)) for a in argv]
    with pytest.raises(error, match=message) as raised:
        entry(argv)
    if error is SystemExit:  # argparse: exit status 2 and the choices in the message
        assert raised.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before
    assert not out.exists()


def test_results_of_a_model_trained_further_are_not_mixed(tiny_run, tmp_path):
    run = copy_of(tiny_run, tmp_path)
    argv = ["--run", str(run), "--limit", "2", "--images-per-solve", "2", "--rtol", "1e-2", "--atol", "1e-2"]
    table1.main(argv)
    train.main([*TINY_TRAINING, "--out", str(run), "--resume", "--steps", "6"])
    with pytest.raises(checkpoint.CheckpointError, match=r"model\.step: saved 4, now 6"):
        table1.main(argv)


@pytest.mark.parametrize("entry", [train.main, table1.main, table2.main, table3.main, compare.main])
def test_help_names_each_default_once(entry, capsys):
    with pytest.raises(SystemExit):
        entry(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default" in text and not re.search(r"\(default:[^)]*\) \(default", text)
    assert "None for the default" not in text
