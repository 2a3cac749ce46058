"""The FastAPI example app (examples/fastapi), served by uvicorn and called over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.web import create_token

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _call(method: str, url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            kind = response.headers.get("content-type", "")
            return response.status, json.loads(body) if "json" in kind else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served(backend_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    env = {**os.environ, "CONVEYOR_URL": backend_url}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "shop:api", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=EXAMPLE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/conveyor/api/v1/health", timeout=1).close()
                break
            except (OSError, urllib.error.URLError):
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"uvicorn did not start:\n{server.communicate()[0]}")
                time.sleep(0.1)
        yield base, env
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=15)
        # The lifespan ran to its end: a shutdown error would show here.
        assert "Traceback" not in out, out


def test_enqueue_run_and_read_a_job_through_the_fastapi_app(
    served: tuple[str, dict[str, str]], backend_url: str
) -> None:
    base, env = served
    status, body = _call("POST", f"{base}/orders/7/receipt")
    assert status == 202, body
    job_id = body["job"]
    assert body["state"] == "available"

    worker = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "shop:app", "--queues", "mail", "--burst"],
        check=False, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=60,
    )
    assert worker.returncode == 0, worker.stderr
    status, body = _call("GET", f"{base}/jobs/{job_id}")
    assert status == 200 and body["state"] == "succeeded", body
    assert body["result"] == "receipt for order 7 sent"
    assert _call("GET", f"{base}/jobs/999999")[0] == 404


def test_the_mounted_dashboard_and_api_require_a_token(
    served: tuple[str, dict[str, str]], backend_url: str
) -> None:
    base, _ = served
    assert _call("GET", f"{base}/conveyor/api/v1/queues")[0] == 401
    app = Conveyor(backend_url)
    try:
        token, _ = create_token(app.backend, name="viewer", role="viewer")
    finally:
        app.close()
    status, body = _call("GET", f"{base}/conveyor/api/v1/queues", token)
    assert status == 200, body
    # The dashboard lives under the mount path: an anonymous visit goes to its sign-in page.
    request = urllib.request.Request(f"{base}/conveyor/")
    with urllib.request.urlopen(request, timeout=10) as response:
        page = response.read().decode()
        assert response.url.startswith(f"{base}/conveyor/")
    assert "/conveyor/" in page
