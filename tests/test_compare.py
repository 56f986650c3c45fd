"""A discriminative run through the same tables, and `python -m experiments.compare`."""

import json

import pytest

from experiments import compare, table1, table2, table3

TABLE1 = ["--limit", "6", "--images-per-solve", "3", "--rtol", "1e-2", "--atol", "1e-2", "--probes", "1"]


@pytest.fixture(scope="module")
def table1_pair(tiny_run, wrn_digits_run, tmp_path_factory):
    """table1 of a score run and of a WideResNet run on the same 6 test images."""
    out = tmp_path_factory.mktemp("table1_pair")
    for name, run in (("score", tiny_run), ("wrn", wrn_digits_run)):
        table1.main(["--run", str(run), "--out", str(out / name / "table1"), *TABLE1])
    return out


def test_a_discriminative_run_goes_through_table1(table1_pair):
    saved = json.loads((table1_pair / "wrn" / "table1" / "table1.json").read_text())
    assert saved["model"] == "WRN-10-2" and saved["num_images"] == 6
    assert saved["bits_per_dim"] is None and saved["nfe_per_image"] is None
    assert saved["accuracy"] >= 0.5  # 100 steps reach about 90 % on digits
    markdown = (table1_pair / "wrn" / "table1" / "table1.md").read_text()
    assert "| WRN-10-2, this run (preset digits; discriminative: argmax of the logits)" in markdown
    assert "none (no likelihood)" in markdown


def test_a_discriminative_run_goes_through_table2_and_table3(wrn_digits_run, tmp_path):
    summary = table2.main(["--run", str(wrn_digits_run), "--out", str(tmp_path / "table2"),
                           "--limit", "3", "--corruptions", "contrast"])
    assert summary["model"] == "WRN-10-2" and summary["clean_bits_per_dim"] is None
    assert summary["corruptions"]["contrast"]["5"]["bits_per_dim"] is None
    summary = table3.main(["--run", str(wrn_digits_run), "--out", str(tmp_path / "table3"),
                           "--limit", "2", "--steps", "3", "--examples", "1"])
    assert summary["deterministic"] and summary["num_images"] == 2
    for norm, epsilon in (("linf", 8 / 255), ("l2", 0.5)):
        assert summary[norm]["robust_accuracy_eot"] == summary[norm]["robust_accuracy_fixed"]
        assert 0 < summary[norm]["mean_perturbation_norm"] <= epsilon * (1 + 1e-5)
        assert summary[norm]["gradients_per_image"] == 3  # one per PGD step
    lines = [json.loads(line) for line in (tmp_path / "table3" / "images.jsonl").read_text().splitlines()]
    assert all(set(line["attacks"]) == {"linf_fixed", "l2_fixed"} and line["kind"] == "logits"
               and len(line["attacks"]["linf_fixed"]["scores"]) == 10 for line in lines)
    assert "deterministic, so fixed and EOT are the same attack" in (tmp_path / "table3" / "table3.md").read_text()


def test_compare_puts_the_runs_side_by_side(table1_pair, tmp_path):
    runs = f"{table1_pair / 'score'},{table1_pair / 'wrn'}"
    compared = compare.main(["--runs", runs, "--out", str(tmp_path)])
    assert set(compared) == {"table1"}
    assert compared["table1"][str(table1_pair / "wrn")]["model"] == "WRN-10-2"
    text = (tmp_path / "compare.md").read_text()
    assert "| WRN-10-2 | 6 |" in text and "none (discriminative)" in text
    assert "Fewer than two runs have table2 results" in text


def test_compare_refuses_other_images_or_seeds(table1_pair, wrn_digits_run, tmp_path):
    other = tmp_path / "wrn_other"
    table1.main(["--run", str(wrn_digits_run), "--out", str(other), *TABLE1, "--limit", "5"])
    runs = f"{table1_pair / 'score'},{table1_pair / 'wrn'}"
    folders = f"{table1_pair / 'wrn'}:table1={other}"
    with pytest.raises(compare.MismatchError, match=r"different test images \(\d+ only in"):
        compare.main(["--runs", runs, "--folders", folders, "--out", str(tmp_path)])
    reseeded = tmp_path / "wrn_seed"
    table1.main(["--run", str(wrn_digits_run), "--out", str(reseeded), *TABLE1, "--seed", "1"])
    with pytest.raises(compare.MismatchError, match="used seed 0, .* seed 1"):
        compare.main(["--runs", runs, "--folders", f"{table1_pair / 'wrn'}:table1={reseeded}",
                      "--out", str(tmp_path)])


@pytest.mark.parametrize("entry", ["figure2", "figure3"])
def test_likelihood_figures_refuse_a_discriminative_run(entry, wrn_digits_run, tmp_path):
    import importlib

    module = importlib.import_module(f"experiments.{entry}")
    with pytest.raises(ValueError, match=f"{entry} needs a likelihood, .* discriminative run \\(WRN-10-2\\)"):
        module.main(["--run", str(wrn_digits_run), "--out", str(tmp_path)])
