"""`python -m experiments.table2` and `experiments.figure4`: results, resume, CIFAR-10-C files."""

import json

import numpy as np
import pytest

from experiments import estimates, figure4, table2
from experiments.corrupted import check_cifar10_c, corrupted_images
from experiments.corruptions import corrupt
from experiments.data import Split
from tests.conftest import interrupted_then_resumed

FAST = ["--limit", "2", "--images-per-solve", "2", "--probes", "1", "--shortlist", "0", "--rtol", "1e-2", "--atol", "1e-2",
        "--corruptions", "gaussian_noise,contrast"]


def run(tiny_run, out, *extra):
    return table2.main(["--run", str(tiny_run), "--out", str(out), *FAST, *extra])


def test_results_resume_and_figure4(tiny_run, tmp_path, monkeypatch):
    summary, calls = interrupted_then_resumed(monkeypatch, estimates, "classify_chunk",
                                              lambda: run(tiny_run, tmp_path), interrupt_at=4)
    assert calls == 11 - 3  # clean + 2 corruptions x 5 severities, 3 done before Ctrl-C

    saved = json.loads((tmp_path / "table2.json").read_text())
    assert saved["num_images"] == 2 and saved["num_corruptions"] == 2
    assert saved["num_corruptions_without_noises"] == 1
    accuracies = {name: [saved["corruptions"][name][str(s)]["accuracy"] for s in range(1, 6)]
                  for name in ("gaussian_noise", "contrast")}
    assert saved["mean_accuracy"] == pytest.approx(np.mean(list(accuracies.values())))
    assert saved["mean_accuracy_without_noises"] == pytest.approx(np.mean(accuracies["contrast"]))
    assert 0 <= saved["clean_accuracy"] <= 1 and saved["clean_bits_per_dim"] > 0
    assert summary["corruptions"] == saved["corruptions"]
    lines = [json.loads(line) for line in (tmp_path / "images.jsonl").read_text().splitlines()]
    assert len(lines) == 22 and {line["severity"] for line in lines} == {0, 1, 2, 3, 4, 5}
    markdown = (tmp_path / "table2.md").read_text()
    assert "| SBGC (Zimmermann et al. 2021) (published) | CIFAR-10-C | 15 | 95.04 | 76.24 | 75.71 |" in markdown
    assert "(1 corruptions)" in markdown and "frost" in markdown
    assert (tmp_path / "corruptions.png").read_bytes()[:4] == b"\x89PNG"

    result = figure4.main(["--table2", str(tmp_path / "table2.json")])
    curve = result["curves"]["contrast"]
    assert curve["severity"] == [0, 1, 2, 3, 4, 5]
    assert curve["accuracy"][0] == saved["clean_accuracy"]
    assert curve["bits_per_dim"][5] == saved["corruptions"]["contrast"]["5"]["bits_per_dim"]
    assert (tmp_path / "figure4.png").read_bytes()[:4] == b"\x89PNG"


def test_left_out_and_unknown_corruptions_are_named(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="unknown 'frost' \\(left out: it needs the authors' frost"):
        table2.main(["--run", str(tiny_run), "--out", str(tmp_path), "--corruptions", "frost"])
    with pytest.raises(ValueError, match="unknown 'fgo'"):
        table2.main(["--run", str(tiny_run), "--out", str(tmp_path), "--corruptions", "fgo"])


def test_figure4_without_table2_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `python -m experiments.table2"):
        figure4.main(["--run", str(tmp_path)])


@pytest.fixture
def tiny_test_split():
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (4, 8, 8, 3), np.uint8), np.array([3, 1, 4, 1]),
                 tuple(str(k) for k in range(10)))


def test_cifar10_c_folder_is_read_by_severity_rows(tiny_test_split, tmp_path):
    """The official layout: rows [(s - 1) N, s N) hold severity s of the N test images."""
    test = tiny_test_split
    files = np.stack([test.images + s for s in range(1, 6)]).reshape(20, 8, 8, 3)
    np.save(tmp_path / "labels.npy", np.tile(test.labels, 5).astype(np.uint8))
    np.save(tmp_path / "fog.npy", files)
    check_cifar10_c(tmp_path, ("fog",), test)
    got = corrupted_images(test, np.array([1, 3]), "fog", 4, seed=0, folder=tmp_path)
    np.testing.assert_array_equal(got, test.images[[1, 3]] + 4)
    np.testing.assert_array_equal(corrupted_images(test, np.array([2]), "fog", 0, seed=0,
                                                   folder=tmp_path), test.images[[2]])


@pytest.mark.parametrize("damage, message", [
    ("missing", r"contrast\.npy: missing"),
    ("shape", r"contrast\.npy: expected uint8 images of shape \(20, 8, 8, 3\)"),
    ("dtype", r"contrast\.npy: expected uint8 images .* got float32"),
    ("labels", r"labels\.npy: expected integer labels of shape \(20,\)"),
])
def test_bad_cifar10_c_files_are_named(tiny_test_split, tmp_path, damage, message):
    test = tiny_test_split
    np.save(tmp_path / "labels.npy", np.tile(test.labels, 5 if damage != "labels" else 4))
    images = np.zeros((20, 8, 8, 3), np.uint8)
    if damage != "missing":
        np.save(tmp_path / "contrast.npy", {"shape": images[:10], "dtype": images.astype(np.float32)}
                .get(damage, images))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        check_cifar10_c(tmp_path, ("contrast",), test)


def test_wrong_labels_in_cifar10_c_are_refused(tiny_test_split, tmp_path):
    test = tiny_test_split
    np.save(tmp_path / "labels.npy", np.zeros(20, np.uint8))
    np.save(tmp_path / "fog.npy", np.zeros((20, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="labels differ from the test split"):
        corrupted_images(test, np.array([0]), "fog", 1, seed=0, folder=tmp_path)


def test_computed_corruption_of_an_image_does_not_depend_on_its_subset(tiny_test_split):
    test = tiny_test_split
    alone = corrupted_images(test, np.array([2]), "shot_noise", 3, seed=5)
    among = corrupted_images(test, np.array([0, 2, 3]), "shot_noise", 3, seed=5)
    np.testing.assert_array_equal(alone[0], among[1])
    np.testing.assert_array_equal(alone, corrupt("shot_noise", test.images[2:3], 3, seed=5, first_index=2))
