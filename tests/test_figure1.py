"""`python -m experiments.figure1`: points, paths through training, discriminative lines."""

import json

import pytest

from experiments import estimates, figure1, table1, train
from tests.conftest import TINY_TRAINING, assert_replotted, counting

FAST = ["--limit", "4", "--images-per-solve", "4", "--probes", "1", "--shortlist", "0", "--rtol", "1e-2", "--atol", "1e-2"]


def test_paths_points_and_lines(tmp_path, wrn_digits_run, monkeypatch):
    kept = tmp_path / "kept"
    train.main([*TINY_TRAINING, "--out", str(kept), "--steps", "4", "--keep-checkpoints"])
    table1.main(["--run", str(kept), *FAST])  # the run's own point, in kept/table1
    table1.main(["--run", str(wrn_digits_run), "--out", str(tmp_path / "wrn_table1"), *FAST])
    argv = ["--runs", f"{kept},{wrn_digits_run}", "--out", str(tmp_path / "figure1"), *FAST,
            "--folders", f"{wrn_digits_run}:table1={tmp_path / 'wrn_table1'}"]
    result = figure1.main(argv)
    score, wrn = result["runs"][str(kept)], result["runs"][str(wrn_digits_run)]
    assert [p["step"] for p in score["path"]] == [2, 4] and score["point"]["num_images"] == 4
    assert all(p["num_images"] == 4 and p["bits_per_dim"] > 0 for p in score["path"])
    assert wrn["kind"] == "logits" and wrn["path"] == [] and wrn["point"]["bits_per_dim"] is None
    saved = json.loads((tmp_path / "figure1" / "figure1.json").read_text())
    assert saved["runs"][str(kept)]["path"] == score["path"]
    assert (tmp_path / "figure1" / "figure1.png").read_bytes()[:4] == b"\x89PNG"
    # A rerun reads every checkpoint's results back instead of classifying again.
    calls = []
    monkeypatch.setattr(estimates, "classify_chunk", counting(estimates.classify_chunk, calls))
    assert figure1.main(argv)["runs"] == result["runs"] and calls == []
    assert_replotted(tmp_path / "figure1", "figure1.png")


def test_a_run_without_results_is_named(tiny_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="no table1 results and no kept checkpoints"):
        figure1.main(["--runs", str(tiny_run), "--out", str(tmp_path)])
