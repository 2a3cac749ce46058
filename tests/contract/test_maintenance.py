"""The maintenance roles on a real backend: one leader at a time, handed over on
resign, cron led only by workers that run cron for an app with schedules."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from conveyor import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.types import JobState
from conveyor.worker.deps import CronDuty, WorkerBackend
from conveyor.worker.maintenance import Maintenance
from conveyor.worker.settings import WorkerSettings
from conveyor.worker.stats import WorkerStats


def maintenance(app: Conveyor, worker_id: str, cron: CronDuty | None = None) -> Maintenance:
    settings = WorkerSettings.build(
        default_queue="default", default_lease=2.0, default_poll_interval=0.05,
        worker_id=worker_id,
    )
    return Maintenance(
        settings=settings, backend=app.backend, retention=3600.0, cron=cron,
        stats=WorkerStats(), stopping=threading.Event(),
    )


def test_one_worker_leads_until_it_resigns_then_another_takes_over(app: Conveyor) -> None:
    first, second = maintenance(app, "w1"), maintenance(app, "w2")
    first.run(every=0)
    second.run(every=0)
    assert first.leading and not second.leading
    assert first.stats.maintenance_passes == 1 and second.stats.maintenance_passes == 0
    first.run(every=0)  # renewal not due yet: no election, still leading
    assert first.leading and first.stats.maintenance_passes == 2
    first.resign()
    second.run(every=0)
    assert second.leading and not first.leading
    first.run(every=0)
    assert not first.leading and first.stats.maintenance_passes == 2


def test_cron_is_led_only_by_a_worker_that_runs_cron_for_an_app_with_schedules(
    app: Conveyor,
) -> None:
    no_cron = maintenance(app, "burst")
    duty = CronDuty(app.cron_scheduler(), lambda: bool(app.schedules))
    runs_cron = maintenance(app, "cron", duty)
    no_cron.run(every=0)
    runs_cron.run(every=0)
    assert no_cron.leading and not no_cron.leading_cron
    assert not runs_cron.leading_cron  # the app has no schedules: not standing

    @app.cron("* * * * *")
    @app.task()
    def tick() -> None: ...

    runs_cron.run(every=0)
    assert runs_cron.leading_cron and not runs_cron.leading
    assert len(app.backend.job_list(JobFilter(task="tick"))) == 1  # the current tick
    runs_cron.resign()
    no_cron.resign()


class SlowPrune:
    """The real backend, each prune batch held up by `delay` seconds (a loaded database)."""

    def __init__(self, backend: Any, delay: float) -> None:
        self._backend = backend
        self._delay = delay
        self.batches = 0

    def job_prune(self, older_than: float, limit: int = 10_000) -> int:
        time.sleep(self._delay)
        self.batches += 1
        return int(self._backend.job_prune(older_than, limit))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def test_pruning_runs_beside_the_fetch_loop_not_in_it(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    noop.enqueue_many(() for _ in range(600))
    app.worker(install_signals=False, burst=True, prune_interval=3600.0).run()
    settings = WorkerSettings.build(
        default_queue="default", default_lease=2.0, default_poll_interval=0.05,
        worker_id="leader", prune_interval=0.0, prune_batch=50,
    )
    slow = SlowPrune(app.backend, delay=0.1)  # 12 batches: 1.2 s of pruning
    leader = Maintenance(
        settings=settings, backend=cast(WorkerBackend, slow), retention=0.0, cron=None,
        stats=WorkerStats(), stopping=threading.Event(),
    )
    started = time.monotonic()
    leader.run(every=0)
    returned = time.monotonic() - started
    assert leader.leading
    assert returned < 0.3, f"the pass waited {returned:.2f}s for the prune"
    leader.run(every=0)  # a pass while the prune runs does not start a second one
    def finished() -> int:
        return len(app.backend.job_list(JobFilter(states=[JobState.SUCCEEDED], limit=1000)))

    deadline = time.monotonic() + 30
    while (finished() or slow.batches < 13) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert finished() == 0
    time.sleep(0.2)
    assert slow.batches == 13  # 12 full batches, then one that finds the rest empty: done
