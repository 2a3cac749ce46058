"""Contract: paused queues offer no work, and API tokens are stored and revoked."""

from __future__ import annotations

import hashlib

from conveyor import Conveyor, JobState
from conveyor.backends.base import FetchParams, JobFilter, TokenInsert
from conveyor.testing import drain


def fetch(app: Conveyor, queues: list[str], limit: int = 10) -> list[int]:
    return [r.id for r in app.backend.job_fetch(FetchParams("w1", queues, limit, 30.0))]


def test_a_paused_queue_is_skipped_by_fetch_and_resumes_where_it_stopped(app: Conveyor) -> None:
    @app.task()
    def work(n: int) -> int:
        return n

    mail = [work.using(queue="mail").enqueue(i).id for i in range(3)]
    other = work.using(queue="other").enqueue(9).id
    backend = app.backend

    assert backend.queue_pause("mail", by="ops") is True
    assert backend.queue_pause("mail") is False  # pausing twice changes nothing
    assert [(p.queue, p.paused_by) for p in backend.queue_pause_list()] == [("mail", "ops")]

    # Only the other queue's job is fetched; the paused queue's jobs stay available.
    assert fetch(app, ["mail", "other"]) == [other]
    assert fetch(app, ["mail"]) == []
    states = {r.id: r.state for r in backend.job_list(JobFilter(queue="mail"))}
    assert states == dict.fromkeys(mail, JobState.AVAILABLE)
    # A paused queue still takes new jobs.
    late = work.using(queue="mail").enqueue(7).id

    assert backend.queue_resume("mail") is True
    assert backend.queue_resume("mail") is False
    assert backend.queue_pause_list() == []
    assert sorted(fetch(app, ["mail"])) == sorted([*mail, late])


def test_pausing_one_queue_does_not_pause_a_queue_with_a_similar_name(app: Conveyor) -> None:
    @app.task()
    def work() -> None: ...

    job = work.using(queue="mail-bulk").enqueue().id
    app.backend.queue_pause("mail")
    assert fetch(app, ["mail-bulk"]) == [job]


def test_job_list_filters_by_creation_time_and_error_text(app: Conveyor) -> None:
    @app.task()
    def work() -> None: ...

    first = work.enqueue().id
    now = app.backend.now()
    records = app.backend.job_list(JobFilter(created_after=now - 60, created_before=now + 60))
    assert [r.id for r in records] == [first]
    assert app.backend.job_list(JobFilter(created_after=now + 60)) == []
    assert app.backend.job_list(JobFilter(created_before=now - 60)) == []
    assert app.backend.job_list(JobFilter(error_text="ValueError")) == []


def test_tokens_are_stored_by_hash_listed_and_revoked(app: Conveyor) -> None:
    digest = hashlib.sha256(b"secret-token").hexdigest()
    backend = app.backend
    token_id = backend.token_insert(
        TokenInsert(name="ci", token_hash=digest, role="enqueuer", tasks=["a", "b"],
                    queues=["q"])
    )
    found = backend.token_by_hash(digest)
    assert found is not None and found.id == token_id
    assert (found.role, list(found.tasks), list(found.queues)) == ("enqueuer", ["a", "b"], ["q"])
    assert found.revoked_at is None and found.last_used_at is None
    backend.token_touch(token_id)
    touched = backend.token_by_hash(digest)
    assert touched is not None and touched.last_used_at is not None
    assert [t.id for t in backend.token_list()] == [token_id]
    assert backend.token_by_hash(hashlib.sha256(b"other").hexdigest()) is None

    assert backend.token_revoke(token_id) is True
    assert backend.token_revoke(token_id) is False
    revoked = backend.token_by_hash(digest)
    assert revoked is not None and revoked.revoked_at is not None


def test_throughput_counts_finished_jobs_per_queue_and_bucket(app: Conveyor) -> None:
    @app.task()
    def ok() -> None: ...

    for _ in range(3):
        ok.using(queue="q1").enqueue()
    drain(app, timeout=10)
    since = app.backend.now() - 3600
    rows = app.backend.job_throughput(since, 60.0)
    assert sum(r.jobs for r in rows if r.queue == "q1" and r.state is JobState.SUCCEEDED) == 3
    assert all(0 <= r.bucket < 61 for r in rows)
