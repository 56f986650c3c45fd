"""`python -m experiments.table1`: results, resuming after an interruption, settings."""

import json

import pytest

from experiments import checkpoint, estimates, table1
from tests.conftest import interrupted_then_resumed

FAST = ["--limit", "6", "--images-per-solve", "2"]


def run(tiny_run, out, *extra):
    return table1.main(["--run", str(tiny_run), "--out", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def uninterrupted(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("table1")
    return out, run(tiny_run, out)


def test_results_files(uninterrupted):
    out, summary = uninterrupted
    saved = json.loads((out / "table1.json").read_text())
    for field in ("accuracy", "bits_per_dim", "bits_per_dim_marginal", "num_images",
                  "nfe_per_image", "images_per_second", "settings"):
        assert field in saved
    settings = saved["settings"]  # the digits preset's: a shortlist of 2 after 4 Heun steps, 2 probes
    assert saved["num_images"] == 6 and (settings["probes"], settings["rtol"]) == (2, 1e-2)
    assert (settings["shortlist"], settings["first_pass_steps"]) == (2, 4)
    assert 0 <= saved["accuracy"] <= 1 and saved["bits_per_dim"] > 0 and saved["nfe_per_image"] > 0
    lines = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all(len(line["scores"]) == 10 and line["kind"] == "likelihood" for line in lines)
    assert all(sum(line["shortlisted"]) == 2 for line in lines)
    markdown = (out / "table1.md").read_text()
    assert "| SBGC (Zimmermann et al. 2021) (published) | CIFAR-10 | 10,000 | 95.04 | 3.11 |" in markdown
    assert "sbgc, this run (preset digits; 2 probe(s)" in markdown
    assert "shortlist of 2 after a first pass of 4 Heun steps" in markdown
    # 4 Heun steps (8 evaluations) on 10 labels, forward and 1 probe; then 2 labels, forward and 2 probes.
    passes = [8 * 10 * 2 + (line["cost"]["nfe"] - 8) * 2 * 3 for line in lines]
    assert [line["cost"]["passes"] for line in lines] == passes
    assert saved["evaluations_per_image"] == pytest.approx(sum(passes) / 6)
    confusion = saved["confusion"]
    assert len(confusion) == 10 and sum(map(sum, confusion)) == 6
    for line in lines:
        assert confusion[line["label"]][line["prediction"]] >= 1
    right = sum(confusion[label][label] for label in range(10))
    assert right == pytest.approx(6 * saved["accuracy"])
    first = lines[0]["label"]
    assert f"| {first} | {confusion[first][first]} | {sum(confusion[first])} |" in markdown


def test_interrupted_run_resumes_without_recomputing(tiny_run, tmp_path, monkeypatch, uninterrupted):
    def cut_the_last_line_short():  # as a kill mid-write would: dropped and recomputed
        with (tmp_path / "images.jsonl").open("a") as file:
            file.write('{"index": 3, "lab')

    resumed, calls = interrupted_then_resumed(monkeypatch, estimates, "classify_chunk",
                                              lambda: run(tiny_run, tmp_path), interrupt_at=2,
                                              between=cut_the_last_line_short)
    assert calls == 2  # chunks 2 and 3 of 3
    expected = uninterrupted[1]
    for field in ("accuracy", "bits_per_dim", "bits_per_dim_marginal", "num_images", "nfe_per_image"):
        assert resumed[field] == pytest.approx(expected[field], rel=1e-6)


def test_changed_settings_are_refused(tiny_run, uninterrupted):
    out, _ = uninterrupted
    with pytest.raises(checkpoint.CheckpointError, match=r"settings\.probes: saved 2, now 3"):
        run(tiny_run, out, "--probes", "3")


def test_the_presets_shortlist_applies_to_the_adaptive_exact_classifier_alone():
    resolve, Options = estimates.resolve, estimates.EstimateOptions
    first_pass = lambda options: (options.shortlist, options.first_pass_steps)
    assert first_pass(resolve(Options(), "digits")) == (2, 4)
    assert first_pass(resolve(Options(), "fashion-mnist")) == (0, 0)
    assert first_pass(resolve(Options(estimator="elbo"), "digits")) == (0, 0)
    assert first_pass(resolve(Options(grid_steps=4), "digits")) == (0, 0)
    assert first_pass(resolve(Options(first_pass="elbo"), "digits")) == (2, 0)
    assert first_pass(resolve(Options(first_pass_steps=0), "digits")) == (2, 0)  # adaptive first pass
    assert first_pass(resolve(Options(shortlist=3), "fashion-mnist")) == (3, 0)
    off = resolve(Options(shortlist=0), "digits")
    assert first_pass(off) == (0, 0) and resolve(off, "digits") == off  # resolving twice changes nothing
    with pytest.raises(ValueError, match="--shortlist must be at least 0, got -1"):
        resolve(Options(shortlist=-1), "digits")


def test_bad_limit(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="--limit must be at least 1"):
        table1.main(["--run", str(tiny_run), "--out", str(tmp_path), "--limit", "0"])


def test_shortlist_after_an_adaptive_first_pass(tiny_run, tmp_path):
    summary = run(tiny_run, tmp_path, "--shortlist", "2", "--first-pass-steps", "0", "--limit", "4")
    lines = [json.loads(line) for line in (tmp_path / "images.jsonl").read_text().splitlines()]
    assert summary["accuracy"] == sum(r["label"] == r["prediction"] for r in lines) / 4
    # A first pass on 10 labels with 1 probe, then 2 labels with 2 probes: fewer passes than
    # all 10 labels with 2 probes at every evaluation.
    assert all(r["cost"]["passes"] < r["cost"]["nfe"] * 10 * 3 for r in lines)
    assert all(sum(r["shortlisted"]) == 2 for r in lines)
    # The true label's score is the first pass's where the shortlist left it out; the table says so.
    outside = sum(not r["shortlisted"][r["label"]] for r in lines)
    assert summary["true_label_outside_shortlist"] == outside
    text = (tmp_path / "table1.md").read_text()
    assert "shortlist of 2 after a first pass at 0.001" in text
    assert (f"the true label outside the shortlist on {outside} image(s)" in text) == (outside > 0)


def test_a_folder_made_before_an_option_existed_resumes_at_its_default(tiny_run, tmp_path, uninterrupted):
    """A results folder from before --estimator (its record lacks the ELBO options) reruns
    with them at their defaults, and refuses them at other values."""
    import shutil

    shutil.copytree(uninterrupted[0], tmp_path / "old")
    path = tmp_path / "old" / checkpoint.CONFIG_FILE
    record = json.loads(path.read_text())
    for name in ("estimator", "elbo_samples", "elbo_rounds"):
        del record["settings"][name]
    path.write_text(json.dumps(record))
    assert run(tiny_run, tmp_path / "old")["accuracy"] == uninterrupted[1]["accuracy"]
    with pytest.raises(checkpoint.CheckpointError, match=r"settings\.estimator: saved None, now 'elbo'"):
        run(tiny_run, tmp_path / "old", "--estimator", "elbo")
