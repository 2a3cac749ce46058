"""`app.settings`: the app's validated settings as one frozen value for the services."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from conveyor import Conveyor, Retry
from conveyor.settings import Settings


def test_settings_carry_the_apps_validated_values(tmp_path) -> None:
    retry = Retry(base=2.0)
    app = Conveyor(
        f"sqlite:///{tmp_path / 'jobs.db'}", lease=45, poll_interval=timedelta(seconds=0.5),
        default_queue="mail", default_priority=2, default_max_attempts=3, default_retry=retry,
        idempotency_window=timedelta(hours=1), retention=timedelta(days=1), connect_timeout=2,
    )
    assert app.settings == Settings(
        lease=45.0, poll_interval=0.5, default_queue="mail", default_priority=2,
        default_max_attempts=3, default_retry=retry, idempotency_window=3600.0,
        retention=86400.0, connect_timeout=2.0,
    )
    assert app.settings.alive_within == 90.0  # two leases
    assert Conveyor(f"sqlite:///{tmp_path / 'b.db'}", lease=5).settings.alive_within == 60.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        app.settings.lease = 1.0  # type: ignore[misc]
    assert app.lease == 45.0  # the app's attributes are unchanged


def test_the_defaults_are_the_apps_defaults(tmp_path) -> None:
    assert Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}").settings == Settings()
