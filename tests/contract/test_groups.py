"""Contract: jobs of one ordering group run one at a time, in enqueue order."""

from __future__ import annotations

import threading
import time
from typing import Any

from conveyor import Conveyor, JobState, Retry
from conveyor.backends.base import Completion, FetchParams

FAST = Retry(base=0.01, factor=1, cap=0.01)


def fetch_ids(app: Conveyor, limit: int = 10) -> set[int]:
    return {job.id for job in app.backend.job_fetch(FetchParams("w", ["default"], limit, 30))}


def test_a_group_offers_only_its_earliest_unfinished_job(app: Conveyor) -> None:
    @app.task()
    def post(account: int, n: int) -> None: ...

    a1, a2, a3 = (post.using(group="acct:1").enqueue(1, n) for n in range(3))
    b1 = post.using(group="acct:2").enqueue(2, 0)
    free = post.enqueue(0, 0)
    assert fetch_ids(app) == {a1.id, b1.id, free.id}
    assert fetch_ids(app) == set()  # a1 and b1 run: their groups wait

    held = a1.refresh().record
    done = Completion(held.id, held.lease_token, "succeeded", result_json="null")
    assert app.backend.job_complete_many([done]) == [a1.id]
    assert fetch_ids(app) == {a2.id}  # next in order, never a3 before it
    assert a3.refresh().state is JobState.AVAILABLE


def test_a_retrying_job_holds_its_group_and_a_dead_one_releases_it(app: Conveyor) -> None:
    @app.task()
    def post(n: int) -> None: ...

    first, second = (post.using(group="g").enqueue(n) for n in range(2))
    assert fetch_ids(app) == {first.id}
    held = first.refresh().record
    error = '{"attempt":1,"type":"X","message":"m","traceback":"","worker":"w","at":0}'
    retry = Completion(held.id, held.lease_token, "retry", error_json=error, retry_delay=3600)
    assert app.backend.job_complete_many([retry]) == [first.id]
    assert first.refresh().state is JobState.SCHEDULED
    assert fetch_ids(app) == set()  # the second waits for the first's retry

    app.backend.job_cancel(first.id)  # finished, by an operator: the group moves on
    assert fetch_ids(app) == {second.id}
    held = second.refresh().record
    dead = Completion(held.id, held.lease_token, "dead", error_json=error)
    assert app.backend.job_complete_many([dead]) == [second.id]
    third = post.using(group="g").enqueue(2)
    assert fetch_ids(app) == {third.id}  # a dead job does not block its group forever


def test_many_workers_run_each_group_serially_and_in_order(make_app: Any) -> None:
    app = make_app()
    log: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    @app.task(retry=FAST)
    def step(group: str, n: int) -> None:
        with lock:
            log.append((group, n, "start"))
        time.sleep(0.01)
        with lock:
            log.append((group, n, "end"))

    for n in range(8):
        for group in ("a", "b", "c"):
            step.using(group=group).enqueue(group, n)
    workers = [app.worker(concurrency=4, install_signals=False, burst=True) for _ in range(2)]
    threads = [threading.Thread(target=w.run) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for group in ("a", "b", "c"):
        events = [(n, what) for g, n, what in log if g == group]
        expected = [(n, what) for n in range(8) for what in ("start", "end")]
        assert events == expected, f"group {group} overlapped or ran out of order: {events}"
    running = peak = 0
    for _, _, what in log:
        running += 1 if what == "start" else -1
        peak = max(peak, running)
    assert peak >= 2  # groups are serial, not the whole queue
