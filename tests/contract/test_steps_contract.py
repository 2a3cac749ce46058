"""The job context and durable steps when the input is wrong, the same call comes twice,
or the worker is stale: each a clear conveyor error, on both backends."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conveyor import (
    Conveyor,
    JobContext,
    LeaseLost,
    NotWaitingError,
    Retry,
    StepFailed,
)
from conveyor.backends.base import FetchParams, HeldJob, StepSave
from conveyor.errors import InvalidArgumentsError
from conveyor.steps import JobContext as Ctx
from conveyor.testing import drain
from conveyor.types import JobState
from conveyor.web.schema import call_schemas


def _last_error(app: Conveyor, job_id: int) -> str:
    record = app.backend.job_get(job_id)
    assert record is not None
    return f"{record.state} {record.errors[-1].type}: {record.errors[-1].message}"


def test_misused_steps_fail_at_once_saying_why(app: Conveyor) -> None:
    @app.task(max_attempts=5)
    def reuse(ctx: JobContext) -> None:
        ctx.step("fetch", lambda x: x, 1)
        ctx.step("fetch", lambda x: x, 2)

    @app.task(max_attempts=5)
    def not_json(ctx: JobContext) -> None:
        ctx.step("fetch", lambda: {1, 2})

    @app.task(max_attempts=5)
    def same_twice(ctx: JobContext) -> list[int]:
        calls: list[int] = []
        a = ctx.step("fetch", lambda x: calls.append(x) or x, 7)
        b = ctx.step("fetch", lambda x: calls.append(x) or x, 7)
        return [a, b, len(calls)]

    jobs = [reuse.enqueue(), not_json.enqueue(), same_twice.enqueue()]
    drain(app, timeout=20)
    # Not retried: the same code misuses the step the same way on every attempt.
    assert _last_error(app, jobs[0].id).startswith("dead conveyor.errors.StepError: step "
                                                   "'fetch' of job")
    assert "other arguments" in _last_error(app, jobs[0].id)
    assert "returned a set, which is not JSON" in _last_error(app, jobs[1].id)
    assert app.backend.job_get(jobs[0].id).attempt == 1  # type: ignore[union-attr]
    assert jobs[2].wait(timeout=5) == [7, 7, 1]  # the same call twice runs once


def test_a_step_retries_by_its_own_policy_and_times_out(app: Conveyor) -> None:
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("try again")
        return "ok"

    @app.task(max_attempts=1)
    def retried(ctx: JobContext) -> str:
        value: str = ctx.step("flaky", flaky, attempts=3, retry=Retry(base=0.01, cap=0.02))
        return value

    @app.task(max_attempts=1)
    def slow(ctx: JobContext) -> None:
        ctx.step("slow", time.sleep, 2, timeout=0.1)

    @app.task(max_attempts=1)
    def exhausted(ctx: JobContext) -> None:
        ctx.step("never", flaky_forever, attempts=2)

    a, b, c = retried.enqueue(), slow.enqueue(), exhausted.enqueue()
    drain(app, timeout=20)
    assert a.wait(timeout=5) == "ok"
    steps = app.operations.job_steps(a.id)[1]
    assert [(s.name, s.tries) for s in steps] == [("flaky", 3)]
    assert ("StepFailed: step 'slow' failed on all 1 tries: step 'slow' ran past its "
            "timeout of 0.1s") in _last_error(app, b.id)
    assert "StepFailed: step 'never' failed on all 2 tries: down" in _last_error(app, c.id)
    assert StepFailed.__mro__[1].__name__ == "StepError"


def flaky_forever() -> None:
    raise ConnectionError("down")


def test_the_context_is_no_argument_of_the_job(app: Conveyor) -> None:
    @app.task()
    def takes(x: int, ctx: JobContext, *, y: int = 0) -> list[Any]:
        return [x, y, ctx.id, ctx.attempt, ctx.queue]

    job = takes.enqueue(1, y=2)
    with pytest.raises(InvalidArgumentsError):
        takes.enqueue(1, 2)  # nothing may be given in the context's place
    with pytest.raises(InvalidArgumentsError):
        takes.enqueue(1, ctx=3)  # type: ignore[call-arg]
    drain(app, timeout=20)
    assert job.wait(timeout=5) == [1, 2, job.id, 1, "default"]
    forms = call_schemas(takes.fn, 10)
    assert all("ctx" not in f["properties"]["kwargs"]["properties"] for f in forms)  # type: ignore[index]


def test_a_signal_to_a_job_that_does_not_wait_is_refused(app: Conveyor) -> None:
    @app.task(max_attempts=1)
    def waits(ctx: JobContext) -> Any:
        return ctx.wait_for("approval", timeout=0.3)

    job = waits.enqueue()
    with pytest.raises(NotWaitingError, match="is available and is not waiting"):
        app.signal(job, "approval", True)
    with pytest.raises(NotWaitingError, match="does not exist"):
        app.signal(999_999, "approval", True)
    drain(app, timeout=20)  # nobody signals: the wait runs out
    assert "SignalTimeout: job" in _last_error(app, job.id)
    assert app.backend.job_get(job.id).attempt == 1  # type: ignore[union-attr]


def test_a_stale_worker_records_no_step_and_no_progress(app: Conveyor) -> None:
    @app.task()
    def anything(ctx: JobContext) -> None: ...

    job = anything.enqueue()
    [first] = app.backend.job_fetch(FetchParams("w1", ["default"], 1, 0.2, start=1))
    time.sleep(0.4)
    # The lease ran out: another worker may run the job now.
    assert app.backend.job_rescue() == [job.id], app.backend.job_get(job.id)
    [second] = app.backend.job_fetch(FetchParams("w2", ["default"], 1, 30.0))
    assert second.lease_token != first.lease_token
    stale = Ctx(app.backend, job_id=job.id, lease_token=first.lease_token, task="anything",
                queue="default", attempt=1, max_attempts=3, timeout=None)
    with pytest.raises(LeaseLost, match="no longer owns the job"):
        stale.step("charge", lambda: "paid")
    with pytest.raises(LeaseLost):
        stale.progress(0.5)
    assert not app.backend.step_save(StepSave(job.id, first.lease_token, "x", "d", "done", "1"))
    current = Ctx(app.backend, job_id=job.id, lease_token=second.lease_token, task="anything",
                  queue="default", attempt=2, max_attempts=3, timeout=None)
    assert current.step("charge", lambda: "paid") == "paid"
    assert [s.name for s in app.operations.job_steps(job.id)[1]] == ["charge"]
    assert app.backend.job_get(job.id).state is JobState.RUNNING  # type: ignore[union-attr]
    # A sleep's wait and the give-back are one write: a stale worker makes neither.
    nap = StepSave(job.id, first.lease_token, "sleep-1", "d", "waiting", wake_in=5.0)
    stale_wait = (HeldJob(job.id, first.lease_token), 5.0, nap)
    assert app.backend.job_suspend_many("w1", [stale_wait]) == []
    assert [s.name for s in app.operations.job_steps(job.id)[1]] == ["charge"]
    nap = StepSave(job.id, second.lease_token, "sleep-1", "d", "waiting", wake_in=5.0)
    wait = (HeldJob(job.id, second.lease_token), 5.0, nap)
    # In one batch with a stale one, which changes nothing.
    assert app.backend.job_suspend_many("w2", [stale_wait, wait]) == [job.id]
    assert app.backend.job_suspend_many("w2", [wait]) == []  # the same call twice
    after = app.backend.job_get(job.id)
    assert after is not None and after.state is JobState.SCHEDULED and after.attempt == 1
    step = {s.name: s for s in app.operations.job_steps(job.id)[1]}["sleep-1"]
    assert step.status == "waiting" and step.wake_at is not None
    assert after.run_at.timestamp() == pytest.approx(step.wake_at, abs=0.01)


def test_a_running_workflow_node_cancelled_settles_its_dependants(app: Conveyor) -> None:
    from conveyor import Workflow

    @app.task()
    def step_one() -> str:
        return "one"

    @app.task()
    def step_two() -> str:
        return "two"

    wf = Workflow("cancel-running-node")
    first = wf.add(step_one.prepare())
    wf.add(step_two.prepare(), depends_on=[first])
    wf.add(step_two.prepare(), depends_on=[first], runs_when="finished")
    handle = app.enqueue_workflow(wf)
    [running] = app.backend.job_fetch(FetchParams("w1", ["default"], 1, 30.0, start=1))
    assert running.id == handle.jobs[0].id
    # The worker gives up on the node (cooperatively or after its grace): its dependants
    # are settled in the same transaction, as for a node cancelled before it started.
    assert app.backend.job_cancel_running(running.id, running.lease_token)
    states = [app.backend.job_get(job.id).state for job in handle.jobs]  # type: ignore[union-attr]
    assert states == [JobState.CANCELLED, JobState.CANCELLED, JobState.AVAILABLE], states
