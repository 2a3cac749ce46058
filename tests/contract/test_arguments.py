"""Arguments are checked against the task's annotations alike in Python and over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import pytest
from starlette.testclient import TestClient

from conveyor import Conveyor, InvalidArgumentsError
from conveyor.backends.base import JobFilter
from conveyor.web import create_app, create_token


class Address(TypedDict):
    city: str
    zip: NotRequired[int]


def _tasks(app: Conveyor) -> dict[str, Any]:
    @app.task()
    def send_welcome(user_id: int) -> None: ...

    @app.task()
    def typed(
        ratio: float, names: list[str], counts: dict[str, int], mode: Literal["a", "b"],
        maybe: int | None = None, address: Address | None = None, anything: Any = None,
        loose=None,
    ) -> None: ...

    return {"send_welcome": send_welcome, "typed": typed}


GOOD = {"ratio": 1, "names": ["x"], "counts": {"a": 1}, "mode": "a"}
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("send_welcome", {"user_id": "42"}, "argument 'user_id' must be int, got string"),
    ("send_welcome", {"user_id": True}, "argument 'user_id' must be int, got boolean"),
    ("send_welcome", {"user_id": 4.5}, "argument 'user_id' must be int, got number"),
    ("send_welcome", {"user": 42}, "unknown argument 'user' (known: user_id)"),
    ("send_welcome", {}, "missing required argument 'user_id'"),
    ("typed", {**GOOD, "ratio": False}, "argument 'ratio' must be float, got boolean"),
    ("typed", {**GOOD, "names": ["x", 1]}, "argument 'names' must be list[str], got array"),
    ("typed", {**GOOD, "counts": {"a": "1"}}, "argument 'counts' must be dict[str, int]"),
    ("typed", {**GOOD, "mode": "c"}, "argument 'mode' must be Literal['a', 'b']"),
    ("typed", {**GOOD, "maybe": "1"}, "argument 'maybe' must be int | None, got string"),
    ("typed", {**GOOD, "address": {"zip": 1}}, "argument 'address' must be"),
    ("typed", {**GOOD, "address": {"city": "x", "planet": "y"}}, "argument 'address'"),
]


def _count(app: Conveyor) -> int:
    return len(app.backend.job_list(JobFilter(limit=1000)))


@pytest.mark.parametrize(("task", "kwargs", "message"), BAD)
def test_python_and_http_refuse_alike_with_the_same_message(
    app: Conveyor, task: str, kwargs: dict[str, Any], message: str
) -> None:
    tasks = _tasks(app)
    with pytest.raises(InvalidArgumentsError) as raised:
        tasks[task].enqueue(**kwargs)
    assert message in str(raised.value)
    with pytest.raises(InvalidArgumentsError, match=r"must be|unknown|missing"):
        tasks[task].enqueue_many([kwargs, kwargs])
    token, _ = create_token(app.backend, name="t", role="enqueuer")
    with TestClient(create_app(app), base_url="http://127.0.0.1") as client:
        r = client.post("/api/v1/jobs", json={"task": task, "kwargs": kwargs},
                        headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == str(raised.value)
    assert _count(app) == 0


def test_positional_values_are_checked_too_and_good_ones_pass(app: Conveyor) -> None:
    tasks = _tasks(app)
    with pytest.raises(InvalidArgumentsError, match="'user_id' must be int, got string") as e:
        tasks["send_welcome"].enqueue("42")
    assert e.value.argument == "user_id" and e.value.where == "args/0"
    with pytest.raises(InvalidArgumentsError, match="'user_id' must be int, got boolean"):
        tasks["send_welcome"].enqueue(True)
    with pytest.raises(InvalidArgumentsError, match="at most 1 positional"):
        tasks["send_welcome"].enqueue(1, 2)
    tasks["send_welcome"].enqueue(42)
    tasks["typed"].enqueue(0.5, ("a", "b"), {}, "b", None, {"city": "x", "zip": 1},
                           anything={"any": [1, None]}, loose=[{"x": 1}])
    tasks["typed"].enqueue(**{**GOOD, "address": {"city": "x"}})
    assert _count(app) == 3


def test_enqueue_many_checks_every_item_and_stores_none_on_a_bad_one(app: Conveyor) -> None:
    send = _tasks(app)["send_welcome"]
    items: list[Any] = [(i,) for i in range(100)] + [("7",)]
    with pytest.raises(InvalidArgumentsError, match="must be int, got string"):
        send.enqueue_many(items)
    assert _count(app) == 0
    assert len(send.enqueue_many(items[:100])) == 100


def test_a_forward_reference_defined_after_the_task_still_resolves(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")

    @app.task()
    def later(value: LaterType) -> None: ...

    with pytest.raises(InvalidArgumentsError, match="must be int, got string"):
        later.enqueue("x")
    later.enqueue(3)
    app.close()


LaterType = int
