"""No function in services/ runs over 60 lines (docs/architecture.md §1).

A long function in a service is several phases in one; split it where the phases meet, so
each reads alone and has a name that says what it does.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MOST_LINES = 60


def long_functions(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MOST_LINES:
                    where = path.relative_to(root.parent)
                    found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_in_services_is_over_sixty_lines() -> None:
    assert long_functions(ROOT / "services") == []


def test_a_long_function_is_found(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MOST_LINES))
    (tmp_path / "long.py").write_text(f"def long() -> None:\n{body}")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/long.py:1 long (61 lines)"]
