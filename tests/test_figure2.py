"""`python -m experiments.figure2`: interpolation, the shape statistic, results and resume."""

import json

import numpy as np
import pytest

from experiments import figure2
from tests.conftest import assert_replotted, interrupted_then_resumed


def test_interpolation_ends_are_the_two_images():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 8, 8, 1), np.uint8)
    times = figure2.interpolation_times(24)
    assert len(times) == 25 and 0.5 in times and times[0] == 0 and times[-1] == 1
    path = figure2.interpolate(a, b, times)
    np.testing.assert_array_equal(path[-1], a)
    np.testing.assert_array_equal(path[0], b)
    np.testing.assert_allclose(path[np.flatnonzero(times == 0.5)[0]], (a / 1 + b) / 2)


def test_shape_statistic_on_convex_and_concave_curves():
    times = figure2.interpolation_times(11)
    convex = np.stack([3 * (times - 0.5) ** 2 + 2 * times, 5 * (times - 0.4) ** 2])
    stats = figure2.shape_statistics(convex, times)
    assert stats["fraction_convex"] == 1
    # f(1/2) - (f(0) + f(1)) / 2: -3/4 for the first curve, -1.25 for the second.
    assert stats["midpoint_gap_mean"] == pytest.approx((-0.75 - 1.25) / 2)
    assert stats["midpoint_gap_standard_error"] == pytest.approx(np.std([-0.75, -1.25], ddof=1) / np.sqrt(2))
    concave = -convex
    stats = figure2.shape_statistics(concave, times)
    assert stats["fraction_convex"] == 0 and stats["midpoint_gap_mean"] == pytest.approx(1.0)
    mixed = np.stack([convex[0], concave[0], times])  # a straight line is not strictly convex
    assert figure2.shape_statistics(mixed, times)["fraction_convex"] == pytest.approx(1 / 3)


def test_results_and_resume(tiny_run, tmp_path, monkeypatch):
    argv = ["--run", str(tiny_run), "--out", str(tmp_path), "--pairs", "3", "--points", "4",
            "--probes", "1", "--rtol", "1e-2", "--atol", "1e-2", "--images-per-solve", "5"]
    # One pair per solve (5 images per solve, 5 points a pair): one call of the pixel map each.
    result, calls = interrupted_then_resumed(monkeypatch, figure2, "to_model_space",
                                             lambda: figure2.main(argv), interrupt_at=2)
    assert calls == 2  # pairs 2 and 3: the first came from images.jsonl
    saved = json.loads((tmp_path / "figure2.json").read_text())
    assert saved["num_pairs"] == 3 and saved["times"] == [0, 1 / 3, 0.5, 2 / 3, 1]
    for curve in saved["curves"].values():
        assert len(curve["mean"]) == 5 and all(np.isfinite(curve["mean"]))
    assert 0 <= saved["shape"]["fraction_convex"] <= 1
    assert result["shape"] == saved["shape"]
    lines = [json.loads(line) for line in (tmp_path / "images.jsonl").read_text().splitlines()]
    assert [line["pair"] for line in lines] == [0, 1, 2]
    assert all(line["a"] != line["b"] and np.shape(line["log_probs"]) == (5, 10) for line in lines)
    assert (tmp_path / "figure2.png").read_bytes()[:4] == b"\x89PNG"
    assert_replotted(tmp_path, "figure2.png")


def test_bad_options(tiny_run, tmp_path):
    run = lambda *extra: figure2.main(["--run", str(tiny_run), "--out", str(tmp_path), *extra])
    with pytest.raises(ValueError, match="--points must be at least 3"):
        run("--points", "2")
    with pytest.raises(ValueError, match="--pairs must be at least 1"):
        run("--pairs", "0")
    with pytest.raises(ValueError, match="--shortlist does not apply"):
        run("--shortlist", "2")
