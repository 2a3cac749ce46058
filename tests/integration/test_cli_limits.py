"""`conveyor limits` and the waits `conveyor status` explains (docs/flow-control.md)."""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from conveyor.cli import cli

APP_SOURCE = """
from conveyor import Conveyor

app = Conveyor({url!r}, poll_interval=0.05)
app.limit("stripe", rate="25/s", concurrency=4)


@app.task(limit="stripe")
def charge(n: int) -> None: ...
"""


@pytest.fixture
def limited_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    name = f"limitsapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE.format(url=f"sqlite:///{tmp_path}/j.db"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    module = importlib.import_module(name)
    module.app.migrate()
    yield f"{name}:app", module.app
    module.app.close()
    sys.modules.pop(name, None)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_limits_set_list_reset_and_status_says_why_jobs_wait(
    limited_app: tuple[str, Any]
) -> None:
    path, app = limited_app
    charge = app.tasks["charge"]
    charge.enqueue_many([(n,) for n in range(40)])
    result = invoke("limits", "set", "stripe", path, "--rate", "10/s", "--burst", "2")
    assert result.exit_code == 0, result.output
    assert "limit stripe: 10/s burst 2, 4 at once" in result.output
    listed = json.loads(invoke("limits", "list", path, "--json").output)
    assert listed[0]["rate"] == "10/s" and listed[0]["overridden"] is True
    assert listed[0]["waiting"] == 40
    status = invoke("status", path)
    assert "40 job(s) waiting for limit stripe: 10/s burst 2, 4 at once, 0 running" in " ".join(
        status.output.split())
    assert json.loads(invoke("status", path, "--json").output)["limits"][0]["name"] == "stripe"
    bad = invoke("limits", "set", "stripe", path, "--rate", "100/ss")
    assert bad.exit_code == 1 and "not a rate" in bad.output and "25/s" in bad.output
    unknown = invoke("limits", "set", "nope", path, "--rate", "1/s")
    assert unknown.exit_code == 1 and "no limit named 'nope'" in unknown.output
    assert invoke("limits", "reset", "stripe", path).exit_code == 0
    assert json.loads(invoke("limits", "list", path, "--json").output)[0]["overridden"] is False
