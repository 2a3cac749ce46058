"""Flow-control limits on both backends, at the fetch that enforces them
(docs/flow-control.md). The fleet-wide figures are in
tests/integration/test_flow_control.py and tests/faults/test_limit_faults.py."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, JobState, RetryAfter
from conveyor.backends.base import AuditFilter, FetchParams, HeldJob, JobFilter
from conveyor.backends.flow import PREFETCH_START_WITHIN
from conveyor.errors import ConfigurationError, InvalidOptionError, OperationError
from conveyor.limits import MAX_LIMIT_KEY


def fetch(app: Conveyor, start: int = 50, worker: str = "w") -> list[Any]:
    return app.backend.job_fetch(FetchParams(worker, ["default"], start, 30.0, start=start))


@pytest.mark.parametrize("rate", ["100/ss", "0/s", "-5/s", "ten/s", "5", math.inf, math.nan,
                                  -1.0, 0, True, None])
def test_a_bad_rate_fails_at_import_with_a_valid_form(tmp_path: Path, rate: Any) -> None:
    app = Conveyor(f"sqlite:///{tmp_path}/unused.db")  # declaring touches no database
    if rate is None:
        app.limit("fine", rate="5/s")  # the control: a valid form is accepted
        return
    with pytest.raises(ConfigurationError, match=r"25/s|more than 0|must be"):
        app.limit("bad", rate=rate)
    with pytest.raises(ConfigurationError):
        app.task(rate_limit=rate, name="bad_task")(lambda: None)


@pytest.mark.parametrize("options", [
    {"rate": "5/s", "burst": 0}, {"rate": "5/s", "burst": math.nan}, {"burst": 3},
    {"concurrency": 0}, {"concurrency": 2.5}, {"key_concurrency": -1},
    {"key_rate": "1/s", "key_burst": math.inf}, {"weights": {"a": 0}},
    {"weights": {"a\x00": 2}},
])
def test_bad_limit_numbers_fail_at_import(tmp_path: Path, options: dict[str, Any]) -> None:
    app = Conveyor(f"sqlite:///{tmp_path}/unused.db")
    with pytest.raises(ConfigurationError):
        app.limit("bad", **options)


def test_unknown_limit_names_and_bad_keys_fail_at_call_time(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError, match=r"no limit named 'nope'.*app.limit"):
        app.task(limit="nope")(lambda: None)
    app.limit("tenants", key_concurrency=2)

    @app.task(limit="tenants")
    def job(n: int) -> None: ...

    @app.task()
    def free(n: int) -> None: ...

    with pytest.raises(InvalidOptionError, match="no limit named 'other'"):
        job.using(limit="other").enqueue(1)
    with pytest.raises(InvalidOptionError, match="limit_key= needs a limit"):
        free.using(limit_key="tenant:1").enqueue(1)
    with pytest.raises(InvalidOptionError, match="NUL"):
        job.using(limit_key="a\x00b")
    with pytest.raises(InvalidOptionError, match=f"at most {MAX_LIMIT_KEY}"):
        job.using(limit_key="k" * (MAX_LIMIT_KEY + 1))
    with pytest.raises(InvalidOptionError, match="surrogate"):
        job.using(limit_key="\ud800")
    # Any other text is a key, stored and read back as given, alike on both backends.
    odd = "tenant:é 🚀 ' \" ; DROP TABLE x; --" + "k" * 150
    stored = job.using(limit_key=odd).enqueue(1)
    assert stored.id is not None
    record = app.backend.job_get(stored.id)
    assert record is not None and (record.limit_name, record.limit_key) == ("tenants", odd)
    assert [r.limit_key for r in fetch(app)] == [odd]


def test_concurrency_per_key_holds_and_an_expired_lease_frees_its_slot(
    make_app: Any
) -> None:
    app = make_app()
    app.limit("tenants", key_concurrency=2, concurrency=5)

    @app.task(limit="tenants")
    def job(n: int) -> None: ...

    app.enqueue_jobs([job.using(limit_key=f"t{k}").prepare(n) for n in range(4)
                      for k in range(4)])
    first = fetch(app)
    assert len(first) == 5  # the limit's 5, at most 2 of a key
    assert max(sum(1 for r in first if r.limit_key == k) for k in ("t0", "t1", "t2", "t3")) <= 2
    assert fetch(app) == []  # nothing more while they run: the job stays available
    assert app.backend.limit_list("tenants")[0].running == 5
    # Their leases run out (a dead worker): the slots are free again at once.
    app.backend.job_heartbeat("w", [HeldJob(r.id, r.lease_token) for r in first], 0.001)
    time.sleep(0.05)
    assert len(fetch(app, worker="w2")) == 5


def test_keys_take_turns_with_weights(make_app: Any) -> None:
    app = make_app()
    app.limit("fair", weights={"vip": 3})

    @app.task(limit="fair")
    def job(n: int) -> None: ...

    app.enqueue_jobs([job.using(limit_key="big").prepare(n) for n in range(100)])
    app.enqueue_jobs([job.using(limit_key=k).prepare(n) for n in range(5)
                      for k in ("small", "vip")])
    picked = [r.limit_key for r in fetch(app, start=10)]
    # Rounds: big, small, vip x3 | big, small, vip x2 | one more: vip has 3 per round.
    assert picked[:5].count("vip") == 3 and {"big", "small"} <= set(picked[:5]), picked
    assert picked.count("vip") == 5 and picked.count("big") <= 3, picked


def test_keys_take_turns_across_fetches_from_where_the_last_one_stopped(
    make_app: Any
) -> None:
    app = make_app()
    app.limit("fair", key_concurrency=100)

    @app.task(limit="fair")
    def job(n: int) -> None: ...

    app.enqueue_jobs([job.using(limit_key=k).prepare(n) for n in range(3)
                      for k in ("a", "b", "c", "d")])
    served = [[r.limit_key for r in fetch(app, start=3)] for _ in range(4)]
    assert served == [["a", "b", "c"], ["d", "a", "b"], ["c", "d", "a"], ["b", "c", "d"]]
    # A key that turns up takes its turn in key order within the round, not after
    # the keys already waiting.
    app.enqueue_jobs([job.using(limit_key=k).prepare(9) for k in ("a", "b", "bb")])
    assert [r.limit_key for r in fetch(app, start=2)] == ["a", "b"]
    assert [r.limit_key for r in fetch(app, start=1)] == ["bb"]


def test_only_a_limit_with_a_rate_alone_fills_the_prefetch_and_its_refill_waits(
    make_app: Any
) -> None:
    """Limited jobs go to free slots, except those of a limit with only a rate once the
    worker's queues show no unlimited job: they may fill the prefetch, and the bucket
    then does not refill for `PREFETCH_START_WITHIN` (the span in which they start)."""
    app = make_app()
    app.limit("fast", rate="1000/s")
    app.limit("bounded", rate="1000/s", concurrency=100)

    @app.task(limit="fast")
    def fast(n: int) -> None: ...

    @app.task(limit="bounded", queue="other")
    def bounded(n: int) -> None: ...

    fast.enqueue_many([(n,) for n in range(100)])
    bounded.enqueue_many([(n,) for n in range(100)])

    def take(queue: str) -> int:
        return len(app.backend.job_fetch(FetchParams("w", [queue], 16, 30.0, start=4)))

    # Free slots first; once the fetch found no unlimited job, the prefetch too.
    assert (take("other"), take("other")) == (4, 4)
    assert (take("default"), take("default")) == (16, 16)
    fetched_at = time.monotonic()
    tokens = app.backend.limit_list("fast")[0].tokens
    assert tokens is not None and tokens <= 1000 - 32 + 5, tokens
    time.sleep(PREFETCH_START_WITHIN / 3)
    paused = app.backend.limit_list("fast")[0].tokens
    assert paused is not None
    # No refill for PREFETCH_START_WITHIN after the fetch (on a slow machine part of
    # it may have passed before the first read: then no more than its rest refills).
    past = time.monotonic() - fetched_at - PREFETCH_START_WITHIN
    assert paused - tokens <= 1000 * max(0.0, past) + 0.5, (tokens, paused, past)
    if past < 0:
        assert paused == tokens
    time.sleep(PREFETCH_START_WITHIN)
    later = app.backend.limit_list("fast")[0].tokens
    assert later is not None and later > tokens + 10, (tokens, later)


def test_a_limit_on_each_keys_concurrency_prefetches_only_from_keys_with_a_slot_to_spare(
    make_app: Any
) -> None:
    """A limit that bounds only each key's concurrency fills the prefetch too, with jobs
    of keys that keep a slot free besides (a prefetched job holds its key's slot), so
    many keys drain with the prefetch while a key at its bound goes only to free slots."""
    app = make_app()
    app.limit("tenants", key_concurrency=2)
    app.limit("single", key_concurrency=1)

    @app.task(limit="tenants")
    def job(n: int) -> None: ...

    @app.task(limit="single", queue="other")
    def one(n: int) -> None: ...

    app.enqueue_jobs([job.using(limit_key=f"k{k}").prepare(n) for n in range(3)
                      for k in range(6)])
    app.enqueue_jobs([one.using(limit_key=f"k{k}").prepare(0) for k in range(6)])

    def take(queue: str) -> list[Any]:
        return app.backend.job_fetch(FetchParams("w", [queue], 10, 30.0, start=2))

    def held_per_key() -> Counter[str | None]:
        running = app.backend.job_list(JobFilter(states=[JobState.RUNNING], limit=100))
        return Counter(r.limit_key for r in running if r.limit_name == "tenants")

    first = take("default")
    # Two free slots, then one job of each other key for the prefetch.
    assert sorted(r.limit_key or "" for r in first) == [f"k{k}" for k in range(6)], first
    assert app.backend.limits_waiting() is not None  # the prefetch was cut short by keys
    # Every key now holds one slot: its last one goes only to a free slot.
    assert len(take("default")) == 2
    assert max(held_per_key().values()) == 2
    assert len(take("default")) == 2
    assert max(held_per_key().values()) == 2
    # One slot per key: nothing is ever prefetched.
    assert len(take("other")) == 2


def test_key_slots_with_weights_prefetch_alike_on_both_backends(make_app: Any) -> None:
    """One statement with free slots and spare key slots together (the fetch right after
    one that found no unlimited job): the free slot takes a key's first job, the
    prefetch up to all but the last slot of each key, and the fetch fills its room."""
    app = make_app()
    keys = [f"k{k:02d}" for k in range(20)]
    app.limit("tenants", key_concurrency=3, weights=dict.fromkeys(keys, 3))

    @app.task(limit="tenants")
    def job(n: int) -> None: ...

    app.enqueue_jobs([job.using(limit_key=k, priority=n).prepare(n) for k in keys
                      for n in range(4)])
    app.backend.job_fetch(FetchParams("w", ["empty"], 1, 30.0, start=1))  # none unlimited
    got = app.backend.job_fetch(FetchParams("w", ["default"], 40, 30.0, start=1))
    per_key = Counter(r.limit_key for r in got)
    assert len(got) == 40 and set(per_key.values()) == {2}, per_key
    # The free slot's job is its key's first in queue order, then the key's second.
    assert [r.args[0] for r in got if r.limit_key == got[0].limit_key] == [0, 1]


def test_a_worker_with_every_slot_taken_prefetches_key_slots_without_waiting_a_poll(
    make_app: Any
) -> None:
    """With every slot running or prefetched, the next fetch has no free slot: it must
    still look for jobs a key-slots limit may prefetch, not wait a poll interval for
    a NOTIFY that a completion never sends."""
    app = make_app()
    app.limit("tenants", key_concurrency=2)

    @app.task(limit="tenants")
    def job(n: int) -> None:
        time.sleep(0.005)

    app.enqueue_jobs([job.using(limit_key=f"k{k}").prepare(n) for k in range(30)
                      for n in range(3)])
    started = time.monotonic()
    app.worker(install_signals=False, burst=True, concurrency=2, poll_interval=2.0).run()
    took = time.monotonic() - started
    assert app.backend.job_list(JobFilter(states=[JobState.AVAILABLE], limit=1)) == []
    # 90 jobs of 5 ms on 2 slots: well under a second of work; each wait for a poll
    # would add 2 s (the worker used to wait several times).
    assert took < 4.0, f"took {took:.1f}s"


def test_a_rate_limit_spends_tokens_and_refills(make_app: Any) -> None:
    app = make_app()
    app.limit("rated", rate="2/s", burst=3)

    @app.task(limit="rated")
    def job(n: int) -> None: ...

    job.enqueue_many([(n,) for n in range(20)])
    assert len(fetch(app)) == 3  # the burst
    assert fetch(app) == []
    assert app.backend.limits_waiting() is not None
    time.sleep(1.1)  # 2 tokens refill
    again = len(fetch(app))
    assert 2 <= again <= 3
    waiting = app.backend.job_list(JobFilter(states=[JobState.AVAILABLE], limit=100))
    assert all(r.attempt == 0 for r in waiting)  # a job waiting for a limit spends nothing
    why = app.operations.why_waiting(waiting[-1])
    assert why is not None and why.startswith("waiting for limit rated: 2/s") and "ahead" in why


def test_run_time_changes_win_over_the_declaration_until_reset(make_app: Any) -> None:
    app = make_app()
    app.limit("stripe", rate="25/s")
    app.declare_limits()
    ops = app.operations
    with pytest.raises(OperationError, match="no limit named 'nope'"):
        ops.set_limit("nope", actor="cli:me", source="cli", rate="1/s")
    with pytest.raises(OperationError, match="not a rate"):
        ops.set_limit("stripe", actor="cli:me", source="cli", rate="10/ss")
    state = ops.set_limit("stripe", actor="cli:me", source="cli", rate="10/s", concurrency=3)
    assert (state.rate, state.burst, state.concurrency, state.overridden) == (10, 10, 3, True)
    # A deploy declaring the old numbers does not undo the operator's.
    again = make_app()
    again.limit("stripe", rate="25/s")
    again.declare_limits()
    assert app.backend.limit_list("stripe")[0].rate == 10
    entries = app.backend.audit_list(AuditFilter(action="limit.set"))
    assert entries and entries[0].target == "limit:stripe"
    assert ops.reset_limit("stripe", actor="cli:me", source="cli")
    again._limits_declared = False
    again.declare_limits()
    assert app.backend.limit_list("stripe")[0].rate == 25


def test_retry_after_pauses_a_limit_or_one_key_for_the_fleet(make_app: Any) -> None:
    app = make_app()
    app.limit("api", key_concurrency=5)

    @app.task(limit="api")
    def job(n: int) -> None: ...

    app.enqueue_jobs([job.using(limit_key=k).prepare(n) for n in range(3) for k in ("a", "b")])
    assert app.backend.limit_pause("api", "a", 30.0, "429")
    assert {r.limit_key for r in fetch(app)} == {"b"}
    assert not app.backend.limit_pause("undeclared", None, 30.0, "429")
    assert app.backend.limit_pause("api", None, 30.0, "429 for all")
    job.using(limit_key="c").enqueue(9)
    assert fetch(app) == []
    assert app.backend.limit_list("api")[0].paused_for > 25
    with pytest.raises(InvalidOptionError):
        RetryAfter(1, key="a")
    with pytest.raises(InvalidOptionError):
        RetryAfter(math.inf, limit="api")
