"""Encryption at rest with a key ring, and secret arguments redacted in every reader."""

from __future__ import annotations

import importlib
import io
import logging
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from rich.console import Console
from starlette.testclient import TestClient

from conveyor import Conveyor, EncryptionKeyMissing, JobState
from conveyor.cli.jobs import record_json, render_job
from conveyor.encryption import Encryption
from conveyor.redaction import REDACTED, Secret
from conveyor.testing import drain
from conveyor.web import create_app, create_token

CARD = "4111-1111-1111-1111"
OLD, NEW = Encryption.generate_key(), Encryption.generate_key()


def _raw_row(app: Conveyor, job_id: int) -> str:
    """The job's stored arguments and result, as the database holds them."""
    if app.url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(app.url.removeprefix("sqlite:///")) as conn:
            row = conn.execute("SELECT args, result FROM conveyor_jobs WHERE id = ?",
                               (job_id,)).fetchone()
    else:
        import psycopg

        with psycopg.connect(app.url) as conn:
            row = conn.execute("SELECT args::text, result::text FROM conveyor_jobs "
                               "WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return f"{row[0]} {row[1]}"


def _register(app: Conveyor) -> None:
    @app.task(secret=["card_number"], max_attempts=3)
    def charge_card(card_number: str, cents: int) -> dict[str, Any]:
        if cents < 0:
            raise ValueError(f"refund to {card_number} refused")
        return {"charged": cents, "card": card_number[-4:]}


def test_round_trip_with_rotation_and_no_plaintext_at_rest(
    make_app: Callable[..., Conveyor],
) -> None:
    before = make_app(middleware=[Encryption(keys={"k-old": OLD})])
    _register(before)
    first = before.get_task("charge_card").enqueue(CARD, cents=100)
    stored = _raw_row(before, first.id)
    assert CARD not in stored and "k-old" in stored and "A256GCM" in stored
    # Rotate: the new key first (it encrypts), the old one kept (it decrypts).
    after = make_app(middleware=[Encryption(keys=[("k-new", NEW), ("k-old", OLD)])])
    _register(after)
    second = after.get_task("charge_card").enqueue(CARD, cents=200)
    assert '"k-new"' in _raw_row(after, second.id)
    drain(after, timeout=20)
    rotated = after.get_job(first.id)
    assert rotated is not None and rotated.wait(5) == {"charged": 100, "card": "1111"}
    assert second.wait(5) == {"charged": 200, "card": "1111"}
    with pytest.raises(EncryptionKeyMissing, match="'k-new'"):  # the old app lacks the new key
        first.result()
    for job in (first, second):
        raw = _raw_row(after, job.id)
        assert "1111" not in raw.split('"data"')[0] and '"charged"' not in raw
        assert '"key":"k-new"' in raw.replace(" ", "")  # results use the current key


def test_a_job_whose_key_is_missing_fails_at_once_naming_the_key(
    make_app: Callable[..., Conveyor],
) -> None:
    writer = make_app(middleware=[Encryption(keys={"k-gone": OLD})])
    _register(writer)
    job = writer.get_task("charge_card").enqueue(CARD, cents=1)
    worker_app = make_app(middleware=[Encryption(keys={"k-new": NEW})])
    _register(worker_app)
    drain(worker_app, timeout=20)
    record = job.refresh().record
    assert record.state is JobState.DEAD and record.attempt == 1  # not retried
    [error] = record.errors
    assert error.type == "conveyor.errors.EncryptionKeyMissing"
    assert "'k-gone'" in error.message and "add that key" in error.message
    with pytest.raises(EncryptionKeyMissing):
        Encryption(keys={"k-new": NEW}).decrypt(
            {"$encrypted": {"key": "k-gone", "data": ""}}, "charge_card")


def test_readers_show_an_encrypted_payload_by_its_key_never_the_ciphertext(
    make_app: Callable[..., Conveyor],
) -> None:
    app = make_app(middleware=[Encryption(keys={"k1": OLD})])
    _register(app)
    job = app.get_task("charge_card").enqueue(CARD, cents=5)
    drain(app, timeout=20)
    token, _ = create_token(app.backend, name="v", role="viewer")
    with TestClient(create_app(app), base_url="http://127.0.0.1") as client:
        body = client.get(f"/api/v1/jobs/{job.id}",
                          headers={"Authorization": f"Bearer {token}"}).json()
    assert body["args"] == [] and body["kwargs"] == {"$encrypted": {"key": "k1"}}
    assert body["result"] == {"$encrypted": {"key": "k1"}}
    record = app.backend.job_get(job.id)
    assert record is not None
    shown = record_json(record)
    assert shown["kwargs"] == {"$encrypted": {"key": "k1"}} and "data" not in str(shown)


def _cli_text(record: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(render_job(record, 0.0))
    return out.getvalue()


def test_secret_arguments_are_redacted_in_api_dashboard_cli_and_logs(
    make_app: Callable[..., Conveyor], caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()  # no encryption: redaction holds on its own
    _register(app)
    ok = app.get_task("charge_card").enqueue(CARD, cents=5)
    bad = app.get_task("charge_card").enqueue(card_number=CARD, cents=-1)
    with caplog.at_level(logging.DEBUG):
        drain(app, timeout=30)
    assert CARD not in caplog.text
    record = app.backend.job_get(bad.id)
    assert record is not None and record.state is JobState.DEAD
    assert all(CARD not in e.message + e.traceback for e in record.errors)
    assert f"refund to {REDACTED} refused" in record.errors[0].message
    token, _ = create_token(app.backend, name="v", role="viewer")
    with TestClient(create_app(app), base_url="http://127.0.0.1") as client:
        headers = {"Authorization": f"Bearer {token}"}
        one = client.get(f"/api/v1/jobs/{ok.id}", headers=headers).json()
        assert one["args"] == [REDACTED, ] and one["kwargs"] == {"cents": 5}
        listed = client.get("/api/v1/jobs", headers=headers).text
        assert CARD not in listed and REDACTED in listed
        page = client.get("/login")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        client.post("/login", data={"csrf": csrf, "token": token})
        for path in (f"/jobs/{ok.id}", f"/jobs/{bad.id}", "/jobs", "/dlq"):
            html = client.get(path).text
            assert CARD not in html, path
        assert REDACTED in client.get(f"/jobs/{bad.id}").text
    for job in (ok, bad):
        stored = app.backend.job_get(job.id)
        assert stored is not None
        assert CARD not in _cli_text(stored) and CARD not in str(record_json(stored))
        assert REDACTED in _cli_text(stored)


def test_a_secret_must_name_a_parameter(app: Conveyor) -> None:
    from conveyor import ConfigurationError

    with pytest.raises(ConfigurationError, match="'card' is not a parameter of pay"):
        @app.task(secret=["card"])
        def pay(card_number: str) -> None: ...


def test_the_process_pool_runs_encrypted_jobs_too(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"sealed_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from conveyor import Conveyor\n"
        "from conveyor.encryption import Encryption\n"
        f"app = Conveyor({backend_url!r}, poll_interval=0.05, "
        f"middleware=[Encryption(keys={{'k1': {OLD!r}}})])\n"
        "@app.task(secret=['card_number'], max_attempts=1)\n"
        "def charge_card(card_number: str, cents: int) -> dict:\n"
        "    if cents < 0:\n"
        "        raise ValueError(f'refund to {card_number} refused')\n"
        "    return {'charged': cents, 'card': card_number[-4:]}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    module = importlib.import_module(name)
    app: Conveyor = module.app
    try:
        ok = module.charge_card.enqueue(CARD, cents=7)
        bad = module.charge_card.enqueue(CARD, cents=-7)
        drain(app, pool="process", app_path=f"{name}:app", concurrency=1, timeout=60)
        assert ok.wait(5) == {"charged": 7, "card": "1111"}
        assert CARD not in _raw_row(app, ok.id) and '"charged"' not in _raw_row(app, ok.id)
        record = bad.refresh().record
        assert record.state is JobState.DEAD
        error = record.errors[0]
        assert "ValueError" in error.type and CARD not in error.message + error.traceback
    finally:
        app.close()
        sys.modules.pop(name, None)


def test_a_secret_can_be_marked_in_the_annotation(app: Conveyor) -> None:
    @app.task()
    def login(user: str, password: Annotated[str, Secret]) -> None: ...

    @app.task()  # annotations that do not resolve yet: the marker is still found
    def rotate(password: Annotated[str, Secret], policy: DefinedNowhere) -> None: ...  # noqa: F821

    for job in (login.enqueue("ann", "hunter2-hunter2"), rotate.enqueue("hunter2-hunter2", 1)):
        record = app.backend.job_get(job.id)
        assert record is not None
        assert REDACTED in record_json(record)["args"]
        assert "hunter2" not in _cli_text(record)
