"""`python -m experiments.figure3`: the draw statistics, the files, and the cache."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments import estimates, figure3


@given(seed=st.integers(0, 2**16), num_draws=st.integers(2, 6))
def test_draw_statistics_average_random_subsets(seed, num_draws):
    rng = np.random.default_rng(seed)
    log_probs = rng.normal(size=(num_draws, 5, 3))
    labels = rng.integers(0, 3, size=5)
    stats = figure3.draw_statistics(log_probs, labels, [1, num_draws], subsamples=200, seed=seed)
    # All draws: one subset, the full average, no spread.
    full = log_probs.mean(axis=0)
    assert stats["accuracy"]["mean"][1] == np.mean(full.argmax(axis=1) == labels)
    assert stats["true_label"]["mean"][1] == pytest.approx(np.mean(full[np.arange(5), labels]))
    assert stats["accuracy"]["std"][1] == 0
    # One draw: the subsets are single draws, so their mean tends to the mean over draws.
    per_draw_true = log_probs[:, np.arange(5), labels].mean(axis=1)
    tolerance = 5 * per_draw_true.std() / np.sqrt(200) + 1e-9
    assert stats["true_label"]["mean"][0] == pytest.approx(per_draw_true.mean(), abs=tolerance)
    wrong = np.where(np.arange(3) == labels[:, None], -np.inf, full)
    assert stats["best_wrong_label"]["mean"][1] == pytest.approx(np.mean(wrong.max(axis=1)))


def test_files_and_cache(tiny_run, tmp_path, monkeypatch):
    argv = ["--run", str(tiny_run), "--out", str(tmp_path), "--images", "4", "--draws", "2",
            "--counts", "1,2", "--subsamples", "3", "--rtol", "1e-3", "--atol", "1e-3",
            "--images-per-solve", "2"]
    result = figure3.main(argv)
    saved = json.loads((tmp_path / "figure3.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(saved["curves"]) == {"shared", "separate"} and saved["counts"] == [1, 2]
    assert saved["seconds_per_image_and_draw"] > 0
    for stats in saved["curves"].values():
        assert all(0 <= a <= 1 for a in stats["accuracy"]["mean"])
    assert (tmp_path / "figure3.png").read_bytes()[:4] == b"\x89PNG"

    calls = []
    monkeypatch.setattr(estimates, "classify_chunk", lambda *args, **kwargs: calls.append(1))
    assert figure3.main(argv) == result  # every draw comes from the cache
    assert calls == []


def test_bad_counts(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="--counts must lie in"):
        figure3.main(["--run", str(tiny_run), "--out", str(tmp_path), "--draws", "3", "--counts", "1,5"])
