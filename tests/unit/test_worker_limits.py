"""Worker settings: child limits refused with a clear error, memory measured, backoff cut short."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.worker.child import resident_memory


@pytest.fixture
def app(tmp_path: Path) -> Conveyor:
    return Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")


@pytest.mark.parametrize("value", [0, -5, True, "100", float("nan")])
def test_max_memory_per_child_must_be_a_positive_number_of_megabytes(
    app: Conveyor, value: object
) -> None:
    with pytest.raises(ConfigurationError, match="max_memory_per_child must be a number of MB"):
        app.worker(pool="process", app_path="x:app", max_memory_per_child=value)


@pytest.mark.parametrize("value", [0, 2.5, False])
def test_max_jobs_per_child_must_be_a_whole_positive_number(app: Conveyor, value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_jobs_per_child"):
        app.worker(pool="process", app_path="x:app", max_jobs_per_child=value)


def test_child_limits_on_the_thread_pool_are_refused_with_what_to_do(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError, match="use pool='process'"):
        app.worker(pool="thread", max_memory_per_child=100)
    with pytest.raises(ConfigurationError, match="use pool='process'"):
        app.worker(pool="thread", max_jobs_per_child=10)


def test_resident_memory_grows_with_what_the_process_holds() -> None:
    before = resident_memory()
    block = bytearray(64 * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    after = resident_memory()
    assert 4 * 2**20 < before < 4 * 2**30
    assert after - before > 48 * 2**20
    del block


def test_a_backoff_wait_ends_as_soon_as_the_heartbeat_finds_the_backend_back(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random
    import threading
    import time

    from conveyor.errors import BackendError

    worker = app.worker(install_signals=False)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the longest step: 10 s
    threading.Timer(0.2, worker._backend_answered.set).start()
    started = time.monotonic()
    worker._backend_failed(BackendError("down"), failures=10)
    assert time.monotonic() - started < 5.0
