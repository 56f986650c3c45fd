"""The repository's shape: entry points stand alone (the design card)."""

import ast
from pathlib import Path

EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def _is_entry_point(path: Path) -> bool:
    return 'if __name__ == "__main__":' in path.read_text()


def _imported_experiments_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "experiments":
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("experiments.")}
    return names


def test_no_module_imports_an_entry_point():
    entry_points = {p.stem for p in EXPERIMENTS.glob("*.py") if _is_entry_point(p)}
    assert {"train", "table1", "table3", "figure3"} <= entry_points
    for path in EXPERIMENTS.glob("*.py"):
        imported = _imported_experiments_modules(path) & entry_points
        assert not imported, f"experiments/{path.name} imports the entry point(s) {sorted(imported)}"
