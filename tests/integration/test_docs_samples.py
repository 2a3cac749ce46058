"""Every shell and Python sample in README.md and docs/*.md runs as written.

The samples run in order in one scratch folder (getting-started first, then the
README, then the other docs), as a reader following along would run them:

- `CONVEYOR_URL` points at a SQLite file in that folder, and the virtual
  environment's `bin` is first on PATH (the README says to activate it);
- a Python sample whose first line is `# some/module.py` is that file: it is
  written there and imported, and its names are in scope for the samples after it;
- every other Python sample of a document runs in one namespace per document,
  which starts as the README's `myapp/tasks.py` does (a fresh `app` with its
  tasks); top-level `await` works, as in an async REPL;
- a shell sample runs with bash, `set -e`, from that folder.

A sample that cannot run here is preceded by
`<!-- sample: skip (the reason) -->`; the test counts them and refuses a
skip without a reason.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import os
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor

ROOT = Path(__file__).resolve().parents[2]
GENERATED = {"reliability.md": "generated from the fault suite's report, not written by hand"}
FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"^<!-- sample: skip \((.+)\) -->$")
MODULE_HEADER = re.compile(r"^# ([\w/]+\.py)\s*$")


@dataclass
class Sample:
    doc: str
    line: int
    lang: str
    code: str
    skip: str | None


def documents() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in GENERATED)
    first = [ROOT / "docs" / "getting-started.md", ROOT / "README.md"]
    return first + [d for d in docs if d not in first]


def samples(path: Path) -> list[Sample]:
    found: list[Sample] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        lang, start = fence.group(1), i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if lang in ("python", "sh", "bash"):
            before = lines[start - 1] if start else ""
            marker = SKIP.match(before)
            assert marker or "sample:" not in before, f"{path.name}:{start}: a skip needs (why)"
            found.append(Sample(path.name, start + 1, lang, "\n".join(lines[start + 1:end]),
                                marker.group(1) if marker else None))
        i = end + 1
    return found


def run_python(sample: Sample, namespace: dict[str, Any], folder: Path) -> None:
    header = MODULE_HEADER.match(sample.code.splitlines()[0])
    if header:
        target = folder / header.group(1)
        target.parent.mkdir(parents=True, exist_ok=True)
        for parent in target.relative_to(folder).parents:
            if str(parent) != ".":
                (folder / parent / "__init__.py").touch()
        target.write_text(sample.code + "\n")
        module = ".".join(target.relative_to(folder).with_suffix("").parts)
        for name in [m for m in sys.modules if m == module.split(".")[0]
                     or m.startswith(module.split(".")[0] + ".")]:
            del sys.modules[name]
        imported = importlib.import_module(module)
        # What follows in the document uses its names, as after `from module import *`.
        namespace.update({k: v for k, v in vars(imported).items() if not k.startswith("_")})
        return
    code = compile(sample.code, f"{sample.doc}:{sample.line}", "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    # A sample runs as the body of a module (dataclasses look their module up by name).
    module = types.ModuleType(str(namespace["__name__"]))
    module.__dict__.update(namespace)
    sys.modules[module.__name__] = module
    try:
        result = eval(code, module.__dict__)
    finally:
        sys.modules.pop(module.__name__, None)
        namespace.update(module.__dict__)
    if asyncio.iscoroutine(result):
        asyncio.run(result)


def run_shell(sample: Sample, folder: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + sample.code], cwd=folder, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, (
        f"{sample.doc}:{sample.line} failed ({done.returncode}):\n{sample.code}\n"
        f"--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-2000:]}"
    )


def test_every_runnable_sample_in_the_docs_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = Path(sys.executable).parent
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVEYOR_URL", f"sqlite:///{tmp_path / 'conveyor.db'}")
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    env = dict(os.environ)
    ran: list[str] = []
    skipped: dict[str, str] = {}
    apps: list[Conveyor] = []
    tasks_module = None
    for doc in documents():
        namespace: dict[str, Any] = {"__name__": "__sample__"}
        if tasks_module is not None:
            exec(tasks_module, namespace)  # the README's myapp/tasks.py
        for sample in samples(doc):
            where = f"{sample.doc}:{sample.line}"
            if sample.skip:
                skipped[where] = sample.skip
                continue
            try:
                if sample.lang == "python":
                    run_python(sample, namespace, tmp_path)
                    if doc.name == "README.md" and MODULE_HEADER.match(sample.code.split("\n")[0]):
                        tasks_module = sample.code
                else:
                    run_shell(sample, tmp_path, env)
            except Exception as exc:
                raise AssertionError(f"{where} failed as written:\n{sample.code}") from exc
            ran.append(where)
        apps += [v for v in namespace.values() if isinstance(v, Conveyor)]
    for app in apps:
        app.close()
    print(f"\n{len(ran)} samples ran, {len(skipped)} skipped (with reasons), "
          f"{len(GENERATED)} generated document(s) left out")
    for where, why in skipped.items():
        print(f"  skipped {where}: {why}")
    assert len(ran) >= 10, ran
