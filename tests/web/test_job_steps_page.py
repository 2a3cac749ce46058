"""The job page of a running job: its progress, metadata and steps, and a Cancel that
asks it to stop."""

from __future__ import annotations

from conveyor.backends.base import FetchParams
from conveyor.steps import JobContext
from tests.web.conftest import Web
from tests.web.test_dashboard import csrf_of, sign_in


def test_a_running_job_page_shows_progress_and_steps_and_cancel_asks_it_to_stop(
    web: Web,
) -> None:
    job = web.app.get_task("add").enqueue(1)
    [record] = web.app.backend.job_fetch(FetchParams("w", ["default"], 1, 30.0, start=1))
    ctx = JobContext(web.app.backend, job_id=record.id, lease_token=record.lease_token,
                     task="add", queue="default", attempt=1, max_attempts=3, timeout=None)
    ctx.step("plan", lambda topic: [f"{topic} <b>1</b>"], "solar")
    ctx.progress(0.4, "searching")
    ctx.set_metadata(model="fake-1")
    client = sign_in(web, "operator")
    page = client.get(f"/jobs/{job.id}")
    assert 'id="steps"' in page.text and "plan" in page.text
    assert "40% searching" in page.text and "fake-1" in page.text
    assert "<b>1</b>" not in page.text  # a step's result is shown as text, escaped
    assert 'id="cancel"' in page.text and "ask to stop" in page.text
    r = client.post(f"/jobs/{job.id}/cancel", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 200 and "cancel requested" in r.text
    assert ctx.cancelled
    viewer = sign_in(web, "viewer")
    assert 'id="cancel"' not in viewer.get(f"/jobs/{job.id}").text
