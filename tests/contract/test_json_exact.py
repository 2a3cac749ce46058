"""Contract: arguments and results read back exactly as given, on every backend.

PostgreSQL's jsonb normalised numbers (1e16 read back as an int, -0.0 as 0.0);
arguments and results are now kept as the JSON text written. Equality is
checked on the JSON text, which tells 1e16 from 10000000000000000 and -0.0 from
0.0 where `==` does not.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conveyor import Conveyor
from conveyor.jsonvalue import dumps
from conveyor.testing import drain

SPECIAL_FLOATS = [-0.0, 0.0, 1e16, 1e308, -1e308, 5e-324, 2.2250738585072014e-308,
                  0.1, 1 / 3, 9007199254740993.0, 123456789012345680.0]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=12)
SCALARS = (
    st.none() | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([2**63, -(2**63) - 1, 10**30])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(SPECIAL_FLOATS)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _echo(value: Any, *, again: Any = None) -> Any:
    return value


def exact(value: Any) -> str:
    return dumps(value)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(JSON, min_size=1, max_size=8))
@example(values=[SPECIAL_FLOATS, {"k": -0.0, "big": 1e16, "x": 2**70}, "\U0001f600é\u2028"])
@example(values=[1e308, 5e-324, -0.0, 10000000000000000, 1e16])
def test_arguments_and_results_round_trip_exactly(app: Conveyor, values: list[Any]) -> None:
    echo = app.tasks.get("echo") or app.task(name="echo")(_echo)
    jobs = [echo.enqueue(value, again=value) for value in values]
    many = echo.enqueue_many([echo.call(value) for value in values])
    for job, value in zip(jobs, values, strict=True):
        record = app.backend.job_get(job.id)
        assert record is not None
        assert exact(record.args) == exact([value])
        assert exact(record.kwargs) == exact({"again": value})
    for job, value in zip(many, values, strict=True):
        assert exact(job.refresh().record.args) == exact([value])
    drain(app, timeout=30)
    for job, value in zip([*jobs, *many], [*values, *values], strict=True):
        record = app.backend.job_get(job.id)
        assert record is not None and record.state.value == "succeeded"
        assert exact(record.result) == exact(value)
