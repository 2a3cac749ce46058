"""A real browser (Debian's Chromium, driven by Playwright) operates the dashboard.

The server is uvicorn on a loopback port with authentication on, the worker
runs in this process, the database is a SQLite file. Screenshots of every
step go to test-artifacts/. Under CI=true a missing browser fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, JobState
from conveyor.web import create_app, create_token

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("CONVEYOR_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage",
]


def _need_browser() -> Any:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        message = f"no Chromium at {CHROMIUM}: apt-get install chromium"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"playwright is not installed ({exc})", pytrace=False)
        pytest.skip(f"playwright is not installed ({exc})")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, asgi: Any) -> None:
        import uvicorn

        self.port = _free_port()
        config = uvicorn.Config(asgi, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Conveyor, dict[str, bool]]]:
    app = Conveyor(f"sqlite:///{tmp_path / 'shop.db'}", poll_interval=0.05, lease=5.0)
    gateway = {"up": False}

    @app.task(max_attempts=1)
    def charge(order: int) -> str:
        if not gateway["up"]:
            raise ConnectionError(f"payment gateway refused order {order}")
        return f"charged {order}"

    app.slo("charges", task=charge, success=0.9)
    yield app, gateway
    app.close()


def test_an_operator_sees_a_dead_job_presses_retry_and_sees_it_succeed(
    shop: tuple[Conveyor, dict[str, bool]],
) -> None:
    sync_playwright = _need_browser()
    app, gateway = shop
    ARTIFACTS.mkdir(exist_ok=True)
    token, _ = create_token(app.backend, name="browser-test", role="operator")
    job = app.get_task("charge").enqueue(1234)
    worker = app.worker(install_signals=False, concurrency=1)
    worker_thread = threading.Thread(target=worker.run, daemon=True)
    worker_thread.start()
    try:
        deadline = time.monotonic() + 30
        while job.refresh().state is not JobState.DEAD:
            assert time.monotonic() < deadline, f"the job did not die: {job.state}"
            time.sleep(0.05)
        with Server(create_app(app, auth=True)) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                         headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            blocked: list[str] = []
            page.on("console", lambda msg: blocked.append(msg.text)
                    if "Content Security Policy" in msg.text else None)
            page.goto(base + "/")
            assert "/login" in page.url
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_selector("#queues")
            assert "1 dead job" in page.inner_text("main")
            assert "charges" in page.inner_text("#slos")  # its budget is spent: 1 of 1 dead
            page.screenshot(path=str(ARTIFACTS / "1-overview.png"), full_page=True)

            page.click("text=1 dead job")
            page.wait_for_selector("#dead-groups")
            assert "ConnectionError" in page.inner_text("#dead-groups")
            page.screenshot(path=str(ARTIFACTS / "2-dead-letters.png"), full_page=True)

            page.goto(f"{base}/jobs?state=dead")
            page.click(f"tr[data-job='{job.id}'] a")
            page.wait_for_selector("#job-state")
            assert page.inner_text("#job-state") == "dead"
            assert "payment gateway refused order 1234" in page.inner_text("main")
            page.screenshot(path=str(ARTIFACTS / "3-dead-job.png"), full_page=True)

            gateway["up"] = True  # the fix is deployed; now the operator retries
            page.click("#retry")
            page.wait_for_selector("text=Job retried.")
            deadline = time.monotonic() + 30
            while page.inner_text("#job-state") != "succeeded":
                assert time.monotonic() < deadline, page.inner_text("#job-state")
                time.sleep(0.2)
                page.reload()
            assert "charged 1234" in page.inner_text("#result")
            page.screenshot(path=str(ARTIFACTS / "4-succeeded.png"), full_page=True)
            assert blocked == []  # nothing on our pages needs an exception to the CSP
            browser.close()
    finally:
        worker.stop()
        worker_thread.join(30)
    assert job.refresh().state is JobState.SUCCEEDED
