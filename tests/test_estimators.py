"""`python -m experiments.estimators`, the ELBO in table1, and calibration (docs/method.md §4.11-4.12)."""

import json

import jax
import numpy as np
import pytest

from classify import calibration
from experiments import estimates, estimators, figure2, table1
from tests.conftest import counting

# The exact row: the digits preset's probes and tolerances on every label (no shortlist), 2
# images per solve.
SETTINGS = ["--limit", "6", "--images-per-solve", "2", "--samples", "4", "--rounds", "4:10,8:3",
            "--grids", "2:log-snr"]
ROWS = ["exact", "elbo_4", "adaptive_4x10_8x3", "grid_2_log_snr"]


@pytest.fixture(scope="module")
def comparison(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("estimators")
    return out, estimators.main(["--run", str(tiny_run), "--out", str(out), *SETTINGS])


def test_every_classifier_on_the_same_images(comparison):
    out, result = comparison
    assert list(result["rows"]) == ROWS
    kinds = {name: {json.loads(line)["kind"] for line in (out / name / "images.jsonl").read_text().splitlines()}
             for name in result["rows"]}
    assert kinds == {"exact": {"likelihood"}, "elbo_4": {"elbo"}, "adaptive_4x10_8x3": {"elbo"},
                     "grid_2_log_snr": {"likelihood"}}
    indices = {name: [json.loads(line)["index"] for line in (out / name / "images.jsonl").read_text().splitlines()]
               for name in result["rows"]}
    assert all(indices[name] == indices["exact"] for name in ROWS) and len(indices["exact"]) == 6
    exact, elbo, adaptive, grid = result["rows"].values()
    assert exact["agreement_with_exact"] == 1 and exact["log_p_minus_exact"]["mean"] == 0
    assert elbo["passes_per_image"] == 4 * 10 and adaptive["passes_per_image"] == 4 * 10 + 8 * 3
    assert elbo["nfe_per_image"] == 0 < exact["nfe_per_image"]
    # Heun: 2 evaluations per step, each a forward and one probe's JVP for each of 10 labels.
    assert grid["nfe_per_image"] == 2 * 2 and grid["passes_per_image"] == 2 * 2 * 10 * 2
    # The exact classifier as its own first pass keeps its prediction at every shortlist size.
    assert all(s == {"keeps_exact_prediction": 1.0, "accuracy": exact["accuracy"]}
               for s in exact["as_first_pass"].values())
    for row in result["rows"].values():
        assert 0 <= row["calibration_error"] <= 1 and 0 <= row["calibration_error_scaled"] <= 1
        assert sum(row["reliability"]["count"]) == 6 and len(row["temperatures"]) == 2
    assert json.loads((out / "estimators.json").read_text()) == result
    assert "| elbo_4 |" in (out / "estimators.md").read_text()
    assert (out / "estimators.png").stat().st_size > 0


def test_a_rerun_reads_every_result_back(comparison, tiny_run, monkeypatch):
    out, result = comparison
    calls = []
    monkeypatch.setattr(estimates, "classify_chunk", counting(estimates.classify_chunk, calls))
    assert estimators.main(["--run", str(tiny_run), "--out", str(out), *SETTINGS]) == result
    assert calls == []


def test_a_shortlists_records_are_refused_as_the_exact_row(comparison, tiny_run, tmp_path):
    out, _ = comparison
    (tmp_path / "exact").mkdir()
    (tmp_path / "exact" / "config.json").write_text((out / "exact" / "config.json").read_text())
    records = [{**json.loads(line), "shortlisted": [True] * 2 + [False] * 8}
               for line in (out / "exact" / "images.jsonl").read_text().splitlines()]
    (tmp_path / "exact" / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match="holds a shortlist's records.*--shortlist 0"):
        estimators.main(["--run", str(tiny_run), "--out", str(tmp_path / "out"), *SETTINGS,
                         "--exact", str(tmp_path / "exact")])


def test_table1_names_the_bound(tiny_run, tmp_path):
    summary = table1.main(["--run", str(tiny_run), "--out", str(tmp_path), "--limit", "2", "--estimator", "elbo",
                           "--elbo-rounds", "4:10,8:3"])
    assert summary["kind"] == "elbo" and summary["evaluations_per_image"] == 4 * 10 + 8 * 3
    markdown = (tmp_path / "table1.md").read_text()
    assert "ELBO of rounds (pairs:labels) 4:10,8:3 shared by the labels" in markdown and "an upper bound" in markdown


@pytest.mark.parametrize("grids", ["0", "4:t", "x"])
def test_bad_grids(tiny_run, tmp_path, grids):
    with pytest.raises(ValueError, match="--grids takes 'steps' or 'steps:log-snr'"):
        estimators.main(["--run", str(tiny_run), "--out", str(tmp_path), "--grids", grids])


@pytest.mark.parametrize("rounds", ["4", "4:10;8:3", "a:b"])
def test_bad_rounds(tiny_run, tmp_path, rounds):
    with pytest.raises(ValueError, match="--elbo-rounds takes 'pairs:labels"):
        table1.main(["--run", str(tiny_run), "--out", str(tmp_path), "--estimator", "elbo", "--elbo-rounds", rounds])


def test_figure2_needs_the_exact_likelihood(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="needs the exact likelihood.*--estimator elbo"):
        figure2.main(["--run", str(tiny_run), "--out", str(tmp_path), "--estimator", "elbo"])


def test_a_replayed_shortlist_decides_by_the_exact_scores_among_the_first_pass_best():
    first = np.array([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    exact = np.array([[0.0, 1.0, 9.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]])
    replayed = estimators.replayed_shortlists(first, exact, labels=np.array([2, 5]))
    # k = 2 keeps labels 0, 1 and 5, 4: predictions 1 and 4, against the exact classifier's 2 and 4
    # and the labels 2 and 5...
    assert replayed["2"] == {"keeps_exact_prediction": 0.5, "accuracy": 0.0}
    # ... k = 3 reaches label 2 of the first image; k = 5 still decides 4 over 5 in the second.
    assert replayed["3"] == {"keeps_exact_prediction": 1.0, "accuracy": 0.5}
    assert replayed["5"] == {"keeps_exact_prediction": 1.0, "accuracy": 0.5}


def test_temperature_is_recovered_from_labels_drawn_at_it():
    key_scores, key_labels = jax.random.split(jax.random.key(0))
    scores = 6 * jax.random.normal(key_scores, (4000, 5))
    labels = jax.random.categorical(key_labels, scores / 3.0)
    assert calibration.fit_temperature(scores, labels) == pytest.approx(3.0, rel=0.1)
    probs, temperatures = calibration.cross_fitted_probabilities(scores, labels)
    assert temperatures == [pytest.approx(3.0, rel=0.15)] * 2
    # Calibrated by construction at T = 3; overconfident at T = 1.
    assert calibration.expected_calibration_error(probs, labels) < 0.03
    assert calibration.expected_calibration_error(calibration.probabilities(scores), labels) > 0.1


def test_calibration_error_of_a_known_diagram():
    """Two images at confidence 0.9, one right: |0.5 - 0.9| = 0.4 in their bin."""
    probs = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert float(calibration.expected_calibration_error(probs, np.array([0, 1]))) == pytest.approx(0.4)
    table = calibration.reliability(probs, np.array([0, 1]), bins=10)
    assert table["count"][9] == 2 and table["accuracy"][9] == 0.5
