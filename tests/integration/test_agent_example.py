"""examples/agent: the research agent against its unreliable fake services, with its
worker SIGKILLed mid-run, on both backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.types import JobState

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "agent"
JOBS = 6


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Any]:
    sys.path.insert(0, str(EXAMPLE))
    from fake_services import FakeServices

    server = FakeServices(tmp_path / "calls.log")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_agent_never_repeats_a_finished_model_call_when_its_worker_is_killed(
    backend_url: str, services: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "CONVEYOR_URL": backend_url, "AGENT_SERVICES": services.url,
           "PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")])}
    monkeypatch.setenv("CONVEYOR_URL", backend_url)  # for the example's own app
    import agent

    app = Conveyor(backend_url)
    app.migrate()
    for task in agent.app.tasks.values():
        app.tasks[task.name] = task  # type: ignore[index]
    jobs = app.enqueue_jobs([agent.research.prepare(f"topic {i}") for i in range(JOBS)])

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "agent:app", "-c", "4",
             "--prefetch", "0", "--lease", "1", "--log-level", "error"],
            env=env, cwd=EXAMPLE,
        )

    worker = start()
    try:
        def waiting() -> int:
            count = 0
            for job in jobs:
                steps = {s.name: s for s in app.operations.job_steps(job.id)[1]}
                wait = steps.get("signal:approval")
                count += wait is not None and wait.status == "waiting"
            return count

        kills = 0
        deadline = time.monotonic() + 90
        while waiting() < JOBS:
            assert time.monotonic() < deadline, "the agents never all reached their approval"
            time.sleep(0.3)
            if kills < 3:  # kill it mid-run, again and again
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                kills += 1
                worker = start()
        # Waiting for approval holds no slot: the jobs are scheduled, not running.
        assert all(app.backend.job_get(j.id).state is JobState.SCHEDULED for j in jobs)
        for i, job in enumerate(jobs):
            payload = {"approved": True} if i else {"approved": False, "reason": "off-topic"}
            assert app.signal(job, "approval", payload) == "woken"
        with pytest.raises(Exception, match="not waiting"):
            app.signal(jobs[0], "approval", {"approved": True})  # already delivered
        for job in jobs:
            result = job.wait(timeout=60)
            assert result["question"].startswith("topic")
        assert jobs[0].wait()["rejected"] == "off-topic"
        assert len(jobs[1].wait()["sources"]) == 6
    finally:
        worker.kill()
        worker.wait()

    answered: dict[str, list[str]] = defaultdict(list)
    for line in (tmp_path / "calls.log").read_text().splitlines():
        _, key, call = line.split()
        answered[key].append(call)
    for job in jobs:
        for step in app.operations.job_steps(job.id)[1]:
            if step.status != "done" or step.name.startswith("signal:"):
                continue
            recorded = json.loads(step.result_json or "{}")["call"]
            calls = answered[f"job{job.id}/{step.name}"]
            # The answer that was stored is the last one the service gave for that call:
            # once a model or tool call finished, it was never made again.
            assert calls[-1] == recorded, (job.id, step.name, calls, recorded)
    app.close()
