"""The README's examples run as printed."""

import re
from pathlib import Path

import equinox as eqx
import numpy as np

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def run_example(marker: str, replacements: dict[str, str] = {}) -> dict:
    (example,) = [e for e in EXAMPLES if marker in e]
    for old, new in replacements.items():
        assert old in example
        example = example.replace(old, new)
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    return namespace


def test_the_gaussian_example_is_bayes_optimal():
    namespace = run_example("noise_fn")
    assert float(namespace["posterior"](namespace["log_p"])[1]) > 0.99


def test_the_run_example_uses_table1s_classifier(tiny_run):
    """On the suite's tiny digits run instead of the main job's: the same classifier value."""
    from experiments.estimates import EstimateOptions, classifier_of, resolve
    from experiments.runs import load_run

    namespace = run_example("classifier_of(run)", {'"runs/digits"': repr(str(tiny_run))})
    result, classifier = namespace["result"], namespace["classifier"]
    assert eqx.tree_equal(classifier, classifier_of(load_run(tiny_run), resolve(EstimateOptions(), "digits")))
    assert result.scores.shape == (1, 10) and int(result.prediction[0]) == int(np.argmax(result.scores[0]))


def bad_input_rows() -> list[tuple[str, str]]:
    """(input, what you get) of each row of the README's bad-input table."""
    table = README.split("### Bad input", 1)[1].split("\n\n")[2]
    return [tuple(cell.strip() for cell in line.strip("|").split(" | "))
            for line in table.splitlines()[2:]]


def test_the_bad_input_table_is_tested_as_it_says():
    """Each row's test file (`tests/test_bad_input.py` unless the row names one) raises the
    errors the row names and passes the options it names."""
    rows = bad_input_rows()
    assert len(rows) >= 25
    for given, result in rows:
        named = re.findall(r"tests/test_\w+\.py", result)
        sources = "".join((ROOT / path).read_text() for path in named or ["tests/test_bad_input.py"])
        for error in re.findall(r"\b[A-Z]\w*(?:Error|Exit|InUse|Diverged)\b", result):
            assert error in sources, (given, error)
        for option in re.findall(r"--[a-z][a-z-]*", given):
            assert option in sources, (given, option)

