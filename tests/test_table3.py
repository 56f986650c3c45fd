"""`python -m experiments.table3`: results files and resuming (one run: compiling the gradient dominates)."""

import json

import pytest

from experiments import table3
from tests.conftest import assert_replotted, interrupted_then_resumed

FAST = ["--limit", "2", "--steps", "1", "--eot-draws", "2", "--probes", "1", "--rtol", "1e-2",
        "--atol", "1e-2", "--examples", "1", "--images-per-batch", "1"]


def run(tiny_run, out, *extra):
    return table3.main(["--run", str(tiny_run), "--out", str(out), *FAST, *extra])


def test_results_files_and_resume(tiny_run, tmp_path, monkeypatch):
    summary, calls = interrupted_then_resumed(monkeypatch, table3, "attack_batch",
                                              lambda: run(tiny_run, tmp_path), interrupt_at=2)
    assert calls == 1  # the first image came from images.jsonl

    saved = json.loads((tmp_path / "table3.json").read_text())
    assert saved["num_images"] == 2 and 0 <= saved["clean_accuracy"] <= 1
    for norm, epsilon in (("linf", 8 / 255), ("l2", 0.5)):
        fields = saved[norm]
        assert fields["epsilon"] == pytest.approx(epsilon)
        for name in ("robust_accuracy_fixed", "robust_accuracy_eot", "mean_perturbation_norm",
                     "seconds_per_image", "nfe_per_image"):
            assert name in fields
        assert 0 < fields["mean_perturbation_norm"] <= epsilon * (1 + 1e-5)
        assert fields["nfe_per_image"] > 0
    lines = [json.loads(line) for line in (tmp_path / "images.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == sorted(line["index"] for line in lines)
    for line in lines:
        assert line["kind"] == "likelihood" and set(line["attacks"]) == {"linf_fixed", "linf_eot", "l2_fixed", "l2_eot"}
        for mode in ("fixed", "eot"):
            assert line["attacks"][f"linf_{mode}"]["perturbation_norm"] <= 8 / 255 * (1 + 1e-5)
            assert line["attacks"][f"l2_{mode}"]["perturbation_norm"] <= 0.5 * (1 + 1e-5)
        assert line["attacks"]["l2_eot"]["cost"]["gradients"] == 2  # 1 step of 2 draws
    assert summary["linf"] == saved["linf"]
    markdown = (tmp_path / "table3.md").read_text()
    assert "| SBGC (Zimmermann et al. 2021) (published) | CIFAR-10 | 216 | 95.04 | 0.00 | 0.00 |" in markdown
    assert (tmp_path / "examples.png").read_bytes()[:4] == b"\x89PNG"
    assert_replotted(tmp_path, "examples.png")



def test_a_transfer_attack_follows_the_elbos_gradients_and_the_exact_classifier_judges(tiny_run, tmp_path):
    """PGD on the ELBO's input gradients (no solver: 0 function evaluations in the attack),
    the adversarial images scored by the exact likelihood (its solver's evaluations)."""
    summary = run(tiny_run, tmp_path, "--attack-with", "elbo", "--attack-elbo-samples", "4")
    lines = [json.loads(line) for line in (tmp_path / "images.jsonl").read_text().splitlines()]
    for line in lines:
        assert line["kind"] == "likelihood" and line["clean"]["cost"]["nfe"] > 0
        assert all(attack["cost"]["nfe"] == 0 and attack["cost"]["gradients"] >= 1
                   for attack in line["attacks"].values())
        assert line["attacks"]["l2_fixed"]["perturbation_norm"] > 0
    assert summary["settings"]["attack_with"] == "elbo"
    assert "gradients of the ELBO of 4 (t, z) pairs (a transfer attack: an upper bound)" in (
        tmp_path / "table3.md").read_text()
