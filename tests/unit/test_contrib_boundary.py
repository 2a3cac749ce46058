"""conveyor's core never imports its framework integrations (conveyor.contrib)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "conveyor"


def test_no_core_module_imports_contrib() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if "contrib" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [f"{path.relative_to(SRC)}: {n}" for n in names
                          if n.startswith("conveyor.contrib")]
    assert not offenders
