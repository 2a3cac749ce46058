"""The smallest wiring of `Middleware` into enqueue and the worker's attempt."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from conveyor import (
    Attempt,
    AttemptResult,
    Conveyor,
    EnqueueError,
    EnqueueJob,
    JobState,
    Middleware,
)
from conveyor.backends.base import JobFilter
from conveyor.testing import drain


class Trace(Middleware):
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    def around_enqueue(self, jobs: list[EnqueueJob], call_next: Any) -> Any:
        self.seen.append(f"{self.name}:enqueue:{len(jobs)}")
        return call_next(jobs)

    def around_attempt(self, attempt: Attempt, call_next: Any) -> AttemptResult:
        self.seen.append(f"{self.name}:attempt")
        return call_next()


class Double(Middleware):
    """Doubles the argument on the way in, and the result on the way out."""

    def around_enqueue(self, jobs: list[EnqueueJob], call_next: Any) -> Any:
        if any(job.kwargs.get("n") == 13 for job in jobs):
            raise EnqueueError("13 is refused")
        return call_next(jobs)

    def around_attempt(self, attempt: Attempt, call_next: Any) -> AttemptResult:
        result: AttemptResult = call_next(replace(attempt, kwargs={"n": attempt.kwargs["n"] * 2}))
        return AttemptResult.succeeded(json.dumps(result.value * 10))


def test_first_registered_is_outermost_and_a_batch_is_refused_whole(
    make_app: Any,
) -> None:
    seen: list[str] = []
    app: Conveyor = make_app(middleware=[Trace("outer", seen)])
    app.add_middleware(Trace("inner", seen))
    app.add_middleware(Double())

    @app.task()
    def echo(n: int) -> int:
        return n

    with pytest.raises(EnqueueError, match="13 is refused"):
        echo.enqueue_many([{"n": 1}, {"n": 13}])
    assert app.backend.job_list(JobFilter(limit=10)) == []
    jobs = echo.enqueue_many([{"n": 1}, {"n": 2}])
    drain(app, concurrency=1, timeout=20)
    assert [job.wait(5) for job in jobs] == [20, 40]
    assert seen[:4] == ["outer:enqueue:2", "inner:enqueue:2"] * 2
    assert seen[4:] == ["outer:attempt", "inner:attempt"] * 2
    assert all(j.refresh().state is JobState.SUCCEEDED for j in jobs)
