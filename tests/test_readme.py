"""The README's example runs as printed."""

import re
from pathlib import Path


def test_readme_example_runs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    posterior = namespace["posterior"](namespace["log_p"])
    assert float(posterior[1]) > 0.99
