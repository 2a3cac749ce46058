"""The live operator console in a real browser (Debian's Chromium, driven by Playwright).

Jobs are enqueued and completed while the pages are open, and the numbers, charts
and attempt history change without a reload: a marker set on the page's window
survives, which a reload would have wiped. Screenshots of every step go to
$CONVEYOR_TEST_ARTIFACTS (default: test-artifacts/ at the repository root,
gitignored; CI keeps that folder). Under CI=true a missing browser fails the test.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from conveyor import Conveyor, Retry
from conveyor.backends.base import SpoolReport
from conveyor.web import create_app, create_token
from tests.web.test_browser import CHROMIUM, CHROMIUM_ARGS, Server, _need_browser

ARTIFACTS = Path(os.environ.get("CONVEYOR_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / "test-artifacts")
LIVE = "live=0.5"  # a fast period, so the test waits little


def _count(page: Any, queue: str, state: str) -> str:
    text: str = page.inner_text(f"tr[data-queue='{queue}'] td[data-count='{state}']")
    return text.strip()


def _wait_for(page: Any, script: str, arg: Any = None, timeout: float = 20.0) -> None:
    try:
        page.wait_for_function(script, arg=arg, timeout=timeout * 1000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "console-failed.png"), full_page=True)
        raise AssertionError(f"not seen: {script}\n{page.inner_text('main')}") from None


def test_the_console_updates_live_without_a_reload(tmp_path: Path) -> None:
    sync_playwright = _need_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app = Conveyor(f"sqlite:///{tmp_path / 'shop.db'}", poll_interval=0.05, lease=5.0)
    gateway = {"up": False}

    @app.task()
    def pack(order: int) -> str:
        time.sleep(0.02)
        return f"packed {order}"

    @app.task(queue="payments", max_attempts=2, retry=Retry(base=0.05, factor=2, cap=0.1))
    def charge(order: int) -> str:
        if not gateway["up"]:
            raise ConnectionError(f"payment gateway refused order {order}")
        return f"charged {order}"

    token, _ = create_token(app.backend, name="console-test", role="operator")
    pack.enqueue(0)  # the queue exists before the page opens
    worker = app.worker(install_signals=False, concurrency=2, queues=["default", "payments"])
    worker_thread: threading.Thread | None = None
    try:
        with Server(create_app(app, auth=True)) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                         headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            blocked: list[str] = []
            page.on("console", lambda msg: blocked.append(msg.text)
                    if "Content Security Policy" in msg.text else None)
            page.goto(f"{base}/login?next=/")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_selector("#queues")
            page.goto(f"{base}/?{LIVE}")
            page.evaluate("window.__noReload = 'still the same page'")
            assert _count(page, "default", "available") == "1"
            assert "nothing finished in the last hour" in page.inner_text("#live-queues")
            page.screenshot(path=str(ARTIFACTS / "console-1-overview-idle.png"), full_page=True)

            # Enqueue while the page is open: the waiting count rises by itself.
            for order in range(1, 6):
                pack.enqueue(order)
            charge.enqueue(99)
            _wait_for(page, "() => document.querySelector(\"tr[data-queue='default'] "
                            "td[data-count='available']\").innerText.trim() === '6'")
            page.screenshot(path=str(ARTIFACTS / "console-2-overview-waiting.png"),
                            full_page=True)

            # A worker completes them: succeeded counts and the chart appear, no reload.
            worker_thread = threading.Thread(target=worker.run, daemon=True)
            worker_thread.start()
            _wait_for(page, "() => { const c = document.querySelector(\"tr[data-queue="
                            "'default'] td[data-count='succeeded']\"); "
                            "return c && c.innerText.trim() === '6'; }")
            _wait_for(page, "() => !!document.querySelector(\"tr[data-queue='payments'] "
                            "td[data-count='dead'] a\")")
            _wait_for(page, "() => document.querySelector(\"tr[data-queue='default'] svg\")"
                            " !== null")
            assert page.evaluate("window.__noReload") == "still the same page"
            assert int(page.get_attribute("body", "data-live-updates") or 0) >= 2
            assert "live ·" in page.inner_text("#live-status")
            assert _count(page, "default", "dead") == "0"  # zeros: plain, not coloured
            assert "zero" in (page.get_attribute(
                "tr[data-queue='default'] td[data-count='dead']", "class") or "")
            page.screenshot(path=str(ARTIFACTS / "console-3-overview-live.png"),
                            full_page=True)

            # Charts over a window, filtered by a select; they follow new completions live.
            page.goto(f"{base}/charts?window=15m&{LIVE}")
            page.select_option("#chart-queue", "default")
            page.click("form.filters button[type=submit]")
            page.wait_for_selector("#chart-keys")
            assert page.inner_text("#chart-total") == "6"
            page.evaluate("window.__noReload = 'charts'")
            for order in range(10, 14):
                pack.enqueue(order)
            _wait_for(page, "() => document.getElementById('chart-total').innerText === '10'")
            assert page.evaluate("window.__noReload") == "charts"
            assert page.query_selector("#chart-wait svg") is not None
            # Only the chosen queue's errors: none failed on `default`.
            assert "ConnectionError" not in page.inner_text("#chart-errors")
            page.screenshot(path=str(ARTIFACTS / "console-4-charts.png"), full_page=True)

            # The job list: selects for queue and task, finished and duration columns.
            page.goto(f"{base}/jobs?{LIVE}")
            page.select_option("#filter-task", "charge")
            page.click("form.filters button[type=submit]")
            page.wait_for_selector("#jobs")
            dead_id = page.get_attribute("#jobs tbody tr", "data-job")
            assert "finished (UTC)" in page.inner_text("#jobs thead")
            assert page.inner_text("#jobs tbody tr td[data-duration]").strip() not in ("", "-")
            page.screenshot(path=str(ARTIFACTS / "console-5-jobs.png"), full_page=True)

            # An operator retry shows between the attempts; the page follows the new run.
            page.goto(f"{base}/jobs/{dead_id}?{LIVE}")
            page.click("#retry")
            page.wait_for_selector("text=Job retried.")
            page.evaluate("window.__noReload = 'job'")
            _wait_for(page, "() => document.getElementById('job-state').innerText === 'dead'"
                            " && document.querySelectorAll('[data-attempt]').length === 4")
            assert page.evaluate("window.__noReload") == "job"
            order = page.eval_on_selector_all(
                "#attempts > *", "els => els.map(e => e.dataset.attempt || 'retry')")
            assert order == ["2-2", "2-1", "retry", "1-2", "1-1"]
            assert "retried by an operator" in page.inner_text("#attempts")
            assert dead_id is not None and len(app.backend.job_retries(int(dead_id))) == 1
            page.screenshot(path=str(ARTIFACTS / "console-6-operator-retry.png"),
                            full_page=True)

            # Spooled jobs per host, as the hosts' forwarders report their deliveries.
            page.goto(f"{base}/?{LIVE}")
            app.backend.spool_report(SpoolReport("web-3", "/var/lib/shop/spool", 120, 0, None))
            _wait_for(page, "() => !!document.querySelector(\"tr[data-spool-host='web-3']\")")
            page.screenshot(path=str(ARTIFACTS / "console-7-spools.png"), full_page=True)

            # The session ends (signed out elsewhere): the page says its numbers are stale.
            page.context.clear_cookies()
            _wait_for(page, "() => document.getElementById('live-status').className"
                            " === 'live stale'")
            assert "not updated" in page.inner_text("#live-status")

            icon = page.request.get(f"{base}/favicon.ico")
            assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg")
            assert blocked == []  # live.js and the pages need no exception to the policy
            browser.close()
    finally:
        worker.stop()
        if worker_thread is not None:
            worker_thread.join(30)
        app.close()
