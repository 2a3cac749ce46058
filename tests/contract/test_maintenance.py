"""The maintenance roles on a real backend: one leader at a time, handed over on
resign, cron led only by workers that run cron for an app with schedules."""

from __future__ import annotations

import threading

from conveyor import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.worker.deps import CronDuty
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
