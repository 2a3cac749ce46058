"""The jobs a worker holds and the fencing check, without a database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from conveyor.backends.base import HeldJob
from conveyor.types import JobRecord, JobState
from conveyor.worker.held import HeldJobs, Start

LEASE = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(job_id: int, token: int = 1, timeout: float | None = None) -> JobRecord:
    now = datetime.now(UTC)
    return JobRecord(
        id=job_id, task="t", queue="default", args=[], kwargs={}, state=JobState.RUNNING,
        priority=5, run_at=now, attempt=1, max_attempts=3, lease_owner="w",
        lease_expires_at=now, lease_token=token, idempotency_key=None, group_key=None,
        timeout=timeout, created_at=now, started_at=now, finished_at=None, result=None,
    )


def holding(*records: JobRecord, soft_timeouts: bool = True) -> tuple[HeldJobs, Clock]:
    clock = Clock()
    held = HeldJobs(lease=LEASE, soft_timeouts=soft_timeouts, clock=clock)
    held.claimed(list(records), sent_at=clock.now)
    return held, clock


def test_a_fetched_job_is_prefetched_until_a_slot_starts_it() -> None:
    job = record(1)
    held, _ = holding(job)
    assert held.counts() == (1, 0) and not held.idle()
    assert held.start(job, stopping=False) is Start.RUN
    assert held.counts() == (1, 1)
    assert held.finished(job) is True
    assert held.counts() == (0, 0)
    assert held.completed([job], durations=False) == {}
    assert held.idle()


def test_a_prefetched_job_past_its_lease_deadline_is_not_started_but_given_back() -> None:
    job = record(1)
    held, clock = holding(job)
    clock.now += LEASE  # the deadline counts from when the fetch was sent
    assert held.start(job, stopping=False) is Start.EXPIRED
    jobs, _ = held.snapshot()
    assert jobs == []  # abandoned: no heartbeat renews it any more
    held.forget(job)
    assert held.idle()


def test_a_prefetched_job_of_a_limit_past_its_start_window_is_given_back() -> None:
    """A rate limit counted a prefetched job as starting within `start_within` of its
    fetch: later, it is given back (LATE), not started; a job handed to a free slot by
    the fetch, a job without a limit and one of a limit without a rate (it counts no
    starts) keep only the lease deadline."""
    slot, limited = (replace(record(n), limit_name="api", limit_key="") for n in (1, 2))
    plain = record(3)
    keyed = replace(record(4), limit_name="tenants", limit_key="t1")
    clock = Clock()
    held = HeldJobs(lease=LEASE, soft_timeouts=True, clock=clock)
    held.claimed([slot, limited, plain, keyed], sent_at=clock.now, start_recorded=1,
                 start_within=lambda limit: None if limit == "tenants" else 0.1)
    clock.now += 0.05
    assert held.start(slot, stopping=False) is Start.RUN
    clock.now += 0.06
    assert held.start(limited, stopping=False) is Start.LATE
    assert held.start(plain, stopping=False) is Start.RUN
    assert held.start(keyed, stopping=False) is Start.RUN
    assert held.counts() == (3, 3)
    assert [j.id for j in held.snapshot()[0]] == [1, 3, 4]  # given back: no longer renewed
    held.forget(limited)


def test_a_heartbeat_moves_the_deadline_from_when_it_was_sent() -> None:
    job = record(1)
    held, clock = holding(job)
    sent, _ = held.snapshot()
    clock.now += 8.0
    assert held.renewed(sent, kept=[1], sent_at=clock.now) == []
    clock.now += 9.0  # 17 s after the fetch, 9 s after the renewal
    assert held.start(job, stopping=False) is Start.RUN


def test_a_renewal_never_moves_the_deadline_back() -> None:
    job = record(1)
    held, clock = holding(job)
    sent, _ = held.snapshot()
    held.renewed(sent, kept=[1], sent_at=clock.now - 5.0)  # a slow, older heartbeat
    clock.now += LEASE - 0.5
    assert held.start(job, stopping=False) is Start.RUN


def test_a_job_with_another_lease_token_is_not_ours() -> None:
    job = record(1, token=1)
    held, _ = holding(job)
    stale = replace(job, lease_token=2)
    assert not held.is_mine(stale)
    assert held.start(stale, stopping=False) is Start.SKIP
    assert held.is_mine(job)  # the entry of the token we hold is kept


def test_a_lost_lease_is_reported_once_and_the_job_is_not_started() -> None:
    job = record(1)
    held, _ = holding(job)
    sent, _ = held.snapshot()
    assert held.renewed(sent, kept=[], sent_at=0.0) == [job]
    assert held.renewed(sent, kept=[], sent_at=0.0) == []  # abandoned: said once
    assert held.start(job, stopping=False) is Start.SKIP
    assert held.idle()


def test_a_job_completed_between_snapshot_and_heartbeat_is_not_reported_lost() -> None:
    done, running = record(1), record(2)
    held, _ = holding(done, running)
    for job in (done, running):
        assert held.start(job, stopping=False) is Start.RUN
    sent, _ = held.snapshot()
    held.finished(done)
    held.completed([done], durations=False)  # the completer wrote it: no longer running
    assert held.renewed(sent, kept=[2], sent_at=0.0) == []


def test_a_finished_job_waiting_for_the_completer_is_not_reported_lost() -> None:
    job = record(1)
    held, _ = holding(job)
    held.start(job, stopping=False)
    held.finished(job)
    sent, _ = held.snapshot()
    assert held.renewed(sent, kept=[], sent_at=0.0) == []  # the completer resolves it


def test_a_job_being_deferred_is_not_reported_lost() -> None:
    job = record(1)
    held, _ = holding(job)
    held.start(job, stopping=False)
    sent, _ = held.snapshot()
    assert held.begin_deferral(job)
    assert held.renewed(sent, kept=[], sent_at=0.0) == []
    held.end_deferral(job, dropped=True)
    assert held.idle()


def test_a_failed_deferral_keeps_the_job_for_shutdown() -> None:
    job = record(1)
    held, _ = holding(job)
    held.start(job, stopping=False)
    assert held.begin_deferral(job)
    held.end_deferral(job, dropped=False)
    left = held.take_for_shutdown()
    assert [h.record for h in left.running] == [job] and left.prefetched == []


def test_an_attempt_that_returns_after_its_lease_was_lost_is_not_written() -> None:
    job = record(1)
    held, _ = holding(job)
    held.start(job, stopping=False)
    sent, _ = held.snapshot()
    held.renewed(sent, kept=[], sent_at=0.0)
    assert held.finished(job) is False
    assert held.counts() == (0, 0)


def test_soft_timeouts_abandon_the_attempt_once() -> None:
    job = record(1, timeout=2.0)
    held, clock = holding(job)
    held.start(job, stopping=False)
    clock.now += 1.0
    assert held.timed_out() == []
    clock.now += 1.0
    assert held.timed_out() == [job]
    assert held.timed_out() == []
    assert held.finished(job) is False


def test_the_process_pool_has_no_soft_timeouts() -> None:
    job = record(1, timeout=2.0)
    held, clock = holding(job, soft_timeouts=False)
    held.start(job, stopping=False)
    clock.now += 5.0
    assert held.timed_out() == []


def test_shutdown_tells_running_jobs_from_prefetched_ones() -> None:
    running, prefetched, finished = record(1), record(2), record(3)
    held, _ = holding(running, prefetched, finished)
    held.start(running, stopping=False)
    held.start(finished, stopping=False)
    held.finished(finished)
    left = held.take_for_shutdown()
    assert [h.record.id for h in left.running] == [1]
    assert [h.record.id for h in left.prefetched] == [2]
    assert held.take_for_shutdown().running == []  # abandoned: given back once


def test_a_stopping_worker_starts_nothing_and_keeps_the_job_for_shutdown() -> None:
    job = record(1)
    held, _ = holding(job)
    assert held.start(job, stopping=True) is Start.SKIP
    assert [h.record for h in held.take_for_shutdown().prefetched] == [job]


def test_durations_are_measured_from_the_start_of_the_attempt() -> None:
    job = record(1)
    held, clock = holding(job)
    clock.now += 3.0  # waited in the prefetch
    held.start(job, stopping=False)
    clock.now += 0.5
    held.finished(job)
    assert held.completed([job], durations=True) == {1: 0.5}
    assert held.attempt_seconds == 0.5


def test_snapshot_lists_only_leases_still_held() -> None:
    a, b = record(1), record(2)
    held, _ = holding(a, b)
    held.start(a, stopping=False)
    sent, _ = held.snapshot()
    held.renewed(sent, kept=[2], sent_at=0.0)  # 1 lost
    jobs, running = held.snapshot()
    assert jobs == [HeldJob(2, 1)] and running == 1
