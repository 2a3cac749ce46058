"""An idle worker's wait is cut short by the waits it gave back, and only by those."""

from __future__ import annotations

import time

from conveyor.worker.wakes import MAX_WAKES, Wakes


def test_an_idle_wait_ends_when_a_given_back_job_comes_due() -> None:
    wakes = Wakes()
    assert wakes.wait(1.0) == 1.0
    wakes.add(0.0)  # due at once: nothing to wait for
    assert wakes.wait(1.0) == 1.0
    wakes.add(5.0)
    wakes.add(0.05)
    assert 0.0 < wakes.wait(1.0) <= 0.06
    time.sleep(0.07)
    # The first one is past: the next is further away than the poll interval.
    assert wakes.wait(1.0) == 1.0
    assert 4.0 < wakes.wait(10.0) <= 5.01


def test_wake_times_are_bounded() -> None:
    wakes = Wakes()
    for _ in range(MAX_WAKES + 10):
        wakes.add(60.0)
    wakes.add(0.05)  # past the bound: seen at the next poll instead
    assert wakes.wait(1.0) == 1.0
