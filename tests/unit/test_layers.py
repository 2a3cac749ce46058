"""The layer contracts (pyproject.toml, `[tool.importlinter]`) catch an upward import.

`.ci/run` runs `lint-imports` on the tree; these tests show that the contracts
can fail: each plants one upward import in a copy of the package (a
`TYPE_CHECKING` one included, since those tie modules together as well) and
expects the checker to name it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ("types", "errors", "clock", "retry", "events", "tracecontext", "settings")


def lint_imports(
    tmp_path: Path, plant: tuple[str, str] | None = None, contract: str = "layers"
) -> str:
    """Run one contract on a copy of the package (with `plant` appended to one file)."""
    shutil.copytree(ROOT / "src" / "conveyor", tmp_path / "conveyor",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if plant is not None:
        relative, code = plant
        with (tmp_path / "conveyor" / relative).open("a") as f:
            f.write("\n" + code + "\n")
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache", "--contract", contract],  # reads ./pyproject.toml
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, timeout=120, check=False,  # broken: exit status 1
    )
    assert "Analyzed" in done.stdout, done.stdout + done.stderr
    assert str(tmp_path) in _origin(tmp_path), "lint-imports read the installed package"
    return done.stdout


def _origin(tmp_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import conveyor; print(conveyor.__file__)"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True,
        check=True,
    )
    return done.stdout


def test_core_imports_nothing_above_it(tmp_path: Path) -> None:
    out = lint_imports(tmp_path)
    core = "|".join(CORE)
    assert not re.search(rf"^conveyor\.({core}) is not allowed", out, re.MULTILINE), out
    assert "conveyor.backends is not allowed" not in out, out


@pytest.mark.parametrize(
    ("relative", "code", "broken"),
    [
        (
            "types.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from conveyor.app import X",
            "conveyor.types is not allowed to import conveyor.app",
        ),
        (
            "observability/slo.py",
            "from conveyor.app import Conveyor as _C",
            "conveyor.observability is not allowed to import conveyor.app",
        ),
        (
            "web/views.py",
            "from conveyor.cli import main as _m",
            "conveyor.web is not allowed to import conveyor.cli",
        ),
    ],
    ids=["core-to-app-under-type-checking", "service-to-app", "web-to-cli"],
)
def test_an_upward_import_breaks_the_contract(
    tmp_path: Path, relative: str, code: str, broken: str
) -> None:
    assert broken in lint_imports(tmp_path, (relative, code))


def test_the_package_root_is_not_imported_from_inside(tmp_path: Path) -> None:
    out = lint_imports(tmp_path, ("insights.py", "from conveyor import Conveyor as _C"), "root")
    assert "conveyor.insights -> conveyor (l." in out, out
