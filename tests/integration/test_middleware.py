"""Attempt middleware and retry policies, on both backends; the two examples of
docs/extending.md are read from the page and run as written."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    Attempt,
    AttemptResult,
    ConfigurationError,
    Conveyor,
    JobState,
    Middleware,
    Retry,
)
from conveyor.middleware import AttemptNext
from conveyor.testing import drain

FAST = Retry(base=0.01, factor=1, cap=0.01)
PAGE = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def example(heading: str) -> dict[str, Any]:
    """Execute the Python blocks of one section of docs/extending.md."""
    text = PAGE.read_text()
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    namespace: dict[str, Any] = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        exec(compile(block, str(PAGE), "exec"), namespace)
    return namespace


def test_the_tenant_example_runs_each_job_as_its_tenant(make_app: Any) -> None:
    # The enqueue half (tagging from the current tenant) needs the enqueue
    # middleware wiring; here the tag is given at enqueue and the attempt half runs.
    ns = example("Example 1: jobs that carry their tenant")
    app: Conveyor = make_app(middleware=[ns["TenantMiddleware"]()], default_retry=FAST)
    current_tenant = ns["current_tenant"]

    @app.task()
    def whoami() -> str | None:
        tenant: str | None = current_tenant.get()
        return tenant

    acme = whoami.using(tags=["tenant:acme", "other"]).enqueue()
    nobody = whoami.enqueue()
    drain(app, concurrency=2)
    assert acme.refresh().record.result == "acme"
    assert nobody.refresh().record.result is None
    assert current_tenant.get() is None  # reset after each attempt


def test_the_cost_example_records_every_attempt(make_app: Any) -> None:
    ns = example("Example 2: the cost of each attempt")
    costs = ns["CostMiddleware"]()
    app: Conveyor = make_app(middleware=[costs], default_retry=FAST)
    calls: dict[str, int] = {}

    @app.task(max_attempts=3)
    def flaky(key: str) -> str:
        calls[key] = calls.get(key, 0) + 1
        if calls[key] == 1:
            raise RuntimeError("first attempt fails")
        return key

    job = flaky.enqueue("a")
    drain(app)
    assert job.refresh().record.state is JobState.SUCCEEDED
    mine = [c for c in costs.costs if c.job_id == job.id]
    assert [(c.task, c.attempt, c.kind) for c in mine] == [
        ("flaky", 1, "error"), ("flaky", 2, "ok"),
    ]
    assert all(c.seconds >= 0 for c in mine)


class DeferOnce(Middleware):
    """Gives each job back once for a moment, attempt not counted."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.lock = threading.Lock()

    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
        with self.lock:
            first = attempt.id not in self.seen
            self.seen.add(attempt.id)
        if first:
            return AttemptResult.deferred(0.05)
        return call_next()


def test_a_deferred_attempt_is_not_counted(make_app: Any) -> None:
    app: Conveyor = make_app(middleware=[DeferOnce()])
    ran: list[int] = []

    @app.task(max_attempts=1)
    def once() -> None:
        ran.append(1)

    job = once.enqueue()
    drain(app)
    record = job.refresh().record
    assert record.state is JobState.SUCCEEDED and ran == [1]
    assert record.attempt == 1  # the deferral did not spend the only attempt


class Refuses(Middleware):
    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
        raise PermissionError(f"job {attempt.id} refused")


def test_a_middleware_that_raises_fails_the_attempt_with_its_error(make_app: Any) -> None:
    app: Conveyor = make_app()
    ran: list[int] = []

    @app.task(max_attempts=1)
    def guarded() -> None:
        ran.append(1)

    app.add_middleware(Refuses())  # added after the task: the worker still uses it
    job = guarded.enqueue()
    drain(app)
    record = job.refresh().record
    assert record.state is JobState.DEAD and ran == []
    assert record.errors[-1].type == "builtins.PermissionError"


def test_the_first_middleware_registered_is_the_outermost(make_app: Any) -> None:
    order: list[str] = []

    class Named(Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
            order.append(f"{self.name}>")
            result = call_next()
            order.append(f"<{self.name}")
            return result

    app: Conveyor = make_app(middleware=[Named("a"), Named("b")])

    @app.task()
    def noop() -> None:
        order.append("task")

    noop.enqueue()
    drain(app)
    assert order == ["a>", "b>", "task", "<b", "<a"]


class Schedule:
    """A retry policy that is not a conveyor.Retry."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def delay(self, attempt: int) -> float:
        self.asked.append(attempt)
        return 0.01 * attempt


def test_any_retry_policy_is_accepted_and_asked_per_failed_attempt(make_app: Any) -> None:
    schedule = Schedule()
    app: Conveyor = make_app()

    @app.task(retry=schedule, max_attempts=3)
    def fails() -> None:
        raise RuntimeError("always")

    job = fails.enqueue()
    drain(app)
    assert job.refresh().record.state is JobState.DEAD
    assert schedule.asked == [1, 2]
    app_default: Conveyor = make_app(default_retry=Schedule())
    assert isinstance(app_default.default_retry, Schedule)


@pytest.mark.parametrize("bad", [object(), 3, "fast"])
def test_something_that_is_not_a_retry_policy_is_refused(make_app: Any, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        make_app(default_retry=bad)
    app: Conveyor = make_app()
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        app.task(retry=bad)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=r"conveyor\.Middleware"):
        app.add_middleware(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), 1e12, True, "5"])
def test_a_deferral_must_be_a_storable_number_of_seconds(seconds: Any) -> None:
    with pytest.raises(ConfigurationError, match="from 0 to"):
        AttemptResult.deferred(seconds)


def test_the_attempt_view_is_read_only(make_app: Any) -> None:
    seen: list[Attempt] = []

    class Keep(Middleware):
        def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
            seen.append(attempt)
            return call_next()

    app: Conveyor = make_app(middleware=[Keep()])

    @app.task()
    def greet(name: str, *, loud: bool = False) -> str:
        return name.upper() if loud else name

    job = greet.using(tags=["t"]).enqueue("ada", loud=True)
    drain(app)
    (attempt,) = seen
    assert (attempt.id, attempt.task, attempt.attempt, attempt.args, dict(attempt.kwargs)) == (
        job.id, "greet", 1, ("ada",), {"loud": True}
    )
    assert attempt.tags == ("t",) and attempt.worker_id
    with pytest.raises(TypeError):
        attempt.kwargs["loud"] = False  # type: ignore[index]
    assert job.refresh().record.result == "ADA"


PROCESS_APP = """
import os
from conveyor import Conveyor, Retry

app = Conveyor({url!r}, poll_interval=0.05, lease=5.0, default_retry=Retry(base=0.01, cap=0.01))

@app.task(max_attempts=2)
def where(fail: bool) -> int:
    if fail:
        raise RuntimeError("fails in the child")
    return os.getpid()
"""


def test_attempt_middleware_runs_in_the_worker_around_a_process_pool_child(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    import os
    import sys
    import uuid

    name = f"mwapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(PROCESS_APP.format(url=backend_url))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    try:
        app: Conveyor = module.app
        pids: list[int] = []

        class WhereAmI(Middleware):
            def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
                pids.append(os.getpid())
                result = call_next()
                return result

        ok = app.tasks["where"].enqueue(False)
        bad = app.tasks["where"].enqueue(True)
        app.add_middleware(WhereAmI())
        app.worker(
            pool="process", concurrency=1, app_path=f"{name}:app", burst=True,
            install_signals=False,
        ).run()
        assert pids and set(pids) == {os.getpid()}  # the middleware ran in the worker
        child = ok.refresh().record.result
        assert isinstance(child, int) and child != os.getpid()  # the task, in a child
        assert bad.refresh().record.errors[0].message == "fails in the child"
    finally:
        module.app.close()
        sys.modules.pop(name, None)
