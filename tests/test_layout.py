"""The tree's arrows point one way: tools and the local stack use the core, never the reverse.

Every import is read with `ast` (function-level imports too), so a lazy import cannot hide
an arrow that runs the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# part -> the top-level packages it must never import
FORBIDDEN: dict[str, set[str]] = {
    "qscore": {"qscore_local", "qscore_tools", "qscore_cli", "workers", "functions", "function_app"},
    "workers": {"qscore_local", "qscore_tools", "qscore_cli", "functions", "function_app"},
    "functions": {"qscore_local", "qscore_tools", "qscore_cli", "workers"},
    "function_app.py": {"qscore_local", "qscore_tools", "qscore_cli", "workers"},
    "qscore_local": {"qscore_tools", "qscore_cli"},
}


def imported_packages(path: Path) -> set[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, alias.name.split(".")[0]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


def sources(part: str) -> list[Path]:
    target = ROOT / part
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_part_imports_nothing_it_must_not(part: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {package}"
        for path in sources(part)
        for line, package in sorted(imported_packages(path))
        if package in FORBIDDEN[part]
    ]
    assert not wrong, "\n".join(wrong)


def test_check_sees_a_seeded_violation(tmp_path: Path) -> None:
    seeded = tmp_path / "bad.py"
    seeded.write_text("def f():\n    from qscore_local.bus import launcher\n")
    assert (2, "qscore_local") in imported_packages(seeded)


def test_demo_tensor_names_match_training() -> None:
    from qscore_local.demo import workload
    from qscore_tools.training import onnx_names

    assert (workload.INPUT_NAME, workload.LABEL_NAME) == (onnx_names.INPUT_NAME, onnx_names.LABEL_NAME)
