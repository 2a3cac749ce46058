"""The OpenAPI document against the live server: schemathesis, every check, both backends.

A real `conveyor web` process (uvicorn on 127.0.0.1, a free port) serves an app
on each backend; schemathesis reads its /api/v1/openapi.json and runs every
phase (examples, coverage, fuzzing, and stateful runs that follow the
document's links: enqueue, then get, cancel and retry that job) with all
checks on. Any finding fails the test: a schema-valid request refused, a
schema-invalid one accepted, an answer that the document does not describe,
a 5xx, a 405 without Allow.

Bounded and repeatable: a fixed seed, a fixed number of examples per
operation, one worker, and a time budget per backend.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, Discard
from conveyor.testing import drain
from conveyor.web import create_token

EXAMPLES = 10
SEED = 20261201
BUDGET = 35.0
"""Seconds schemathesis may spend per backend (its own --max-time is on top of this)."""
ADMIN_ID = 7_340_031_977_181_539
"""The admin token's id: far from the small ids and the bounds that fuzzing tries on
DELETE /tokens/{token_id}, so the run never revokes its own token."""

APP_MODULE = '''
import os
from typing import Any, Literal, Optional

from conveyor import Conveyor

app = Conveyor(os.environ["CONVEYOR_SCHEMATHESIS_URL"])


@app.task()
def add(a: int, b: int = 1) -> int:
    return a + b


@app.task()
def flexible(*args: Any, **kwargs: Any) -> int:
    return len(args) + len(kwargs)


@app.task(queue="mail")
def typed(ids: list[int], mode: Literal["fast", "slow"], /,
          labels: Optional[dict[str, float]] = None, *, note: str, urgent=False) -> None:
    pass
'''


HOOKS_MODULE = f'''
import os
from decimal import Decimal, InvalidOperation

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    """The run's own admin token is never revoked (its id shows in GET /tokens, and the
    inferred links would feed it to DELETE /tokens/{{token_id}}); every other id is."""
    try:
        mine = Decimal(str(case.path_parameters.get("token_id")).strip()) == {ADMIN_ID}
    except (InvalidOperation, ValueError):
        mine = False
    if mine:
        case.path_parameters["token_id"] = {ADMIN_ID - 1}


@schemathesis.hook
def after_call(context, case, response):
    """Record what each stateful step answered, for the test to check the links."""
    phase = case.meta.phase.name.value if case.meta is not None else "?"
    if phase == "stateful":
        with open(os.environ["SCHEMATHESIS_STEPS"], "a") as out:
            out.write(f"{{case.operation.definition.raw.get('operationId')}} "
                      f"{{response.status_code}}\\n")
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _prepare(url: str) -> str:
    """A migrated database with an admin token whose id is ADMIN_ID, and jobs at the
    smallest ids (1 dead, 2 and 3 waiting), so that fuzzed ids reach past 404."""
    app = Conveyor(url, poll_interval=0.05)
    try:
        app.migrate()

        @app.task(name="add", max_attempts=1)
        def seeded(a: int, b: int = 1) -> int:
            raise Discard(f"seeded dead job {a}")

        seeded.enqueue(1)
        drain(app, timeout=30)
        seeded.enqueue(2)
        seeded.enqueue(3)
        if url.startswith("postgresql"):
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"ALTER TABLE conveyor_api_tokens ALTER COLUMN id "
                             f"RESTART WITH {ADMIN_ID}")
            token, token_id = create_token(app.backend, name="schemathesis", role="admin")
        else:
            token, token_id = create_token(app.backend, name="schemathesis", role="admin")
            with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
                conn.execute("UPDATE conveyor_api_tokens SET id = ? WHERE id = ?",
                             (ADMIN_ID, token_id))
            token_id = ADMIN_ID
        assert token_id == ADMIN_ID
        return token
    finally:
        app.close()


@pytest.fixture
def server(backend_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, admin token) of a live `conveyor web` on this backend."""
    token = _prepare(backend_url)
    (tmp_path / "schemathesis_app.py").write_text(APP_MODULE)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "CONVEYOR_SCHEMATHESIS_URL": backend_url}
    log = (tmp_path / "web.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "web", "schemathesis_app:app", "--host",
         "127.0.0.1", "--port", str(port), "--rate-limit", "100000", "--burst", "100000"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"conveyor web did not start: {(tmp_path / 'web.log').read_text()}")
            time.sleep(0.2)
        yield base, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.timeout(240)
def test_schemathesis_finds_nothing(server: tuple[str, str], tmp_path: Path) -> None:
    base, token = server
    (tmp_path / "schemathesis_hooks.py").write_text(HOOKS_MODULE)
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/api/v1/openapi.json",
        "--checks", "all",
        "--header", f"Authorization: Bearer {token}",
        "--max-examples", str(EXAMPLES),
        "--seed", str(SEED),
        # Free-form JSON arguments cannot carry a "no NUL" pattern; typed text says so.
        "--generation-allow-x00", "false",
        "--workers", "1",
        "--request-timeout", "10",
        "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=BUDGET + 120,
                          env={**os.environ, "COLUMNS": "120", "PYTHONPATH": str(tmp_path),
                               "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
                               "SCHEMATHESIS_STEPS": str(tmp_path / "steps.txt")},
                          cwd=tmp_path, check=False)  # its cache stays out of the tree
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    assert "No issues found" in output or " passed" in output, output[-5000:]
    assert not re.search(r"\b0 generated", output), output[-5000:]
    assert "Authentication failed" not in output, output[-5000:]
    # The links took stateful runs past 404: an enqueued job was read, cancelled, retried.
    steps = (tmp_path / "steps.txt").read_text().split("\n")
    for reached in ("get_job 200", "cancel_job 200", "retry_job 409"):
        assert reached in steps, sorted(set(steps))
    print(output[-1500:], f"\n({time.monotonic() - started:.0f}s)")
