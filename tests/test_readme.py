"""The README's examples run as printed."""

import re
from pathlib import Path

import equinox as eqx
import numpy as np

README = (Path(__file__).parents[1] / "README.md").read_text()
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
