"""Flow-control limits as declared: rates, bursts, concurrency, per limit and per key.

A limit is a name with numbers; the database holds its state (token buckets,
pauses, turns) and the fetch enforces it (see docs/flow-control.md). This module
only parses and checks what the user writes, so a bad limit fails at import or
call time with the form it expects.

Rate semantics (token bucket): a bucket holds at most `burst` tokens and refills
at `rate` tokens per second; each start takes one. So over any window of T
seconds at most `burst + rate * T` jobs start. The default burst is one second's
worth of the rate (at least 1).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from conveyor.errors import InvalidOptionError

MAX_LIMIT_KEY = 200
"""Longest limit key (characters) either backend accepts."""
MAX_LIMIT_NAME = 200

_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*([a-z]+)\s*$")
_RATE_FORM = "a rate is written like '25/s', '600/m', '1000/h' or '10000/d'"


def parse_rate(value: object, what: str = "rate") -> float:
    """Starts per second from '25/s', '600/m', '2/h', '100/d' (or a positive number)."""
    if isinstance(value, bool):
        raise InvalidOptionError(f"{what} must be like '25/s', got {value!r}")
    if isinstance(value, int | float):
        per_second = float(value)
    elif isinstance(value, str):
        match = _RATE.match(value)
        if match is None or match.group(2) not in _UNITS:
            raise InvalidOptionError(f"{what} {value!r} is not a rate: {_RATE_FORM}")
        per_second = float(match.group(1)) / _UNITS[match.group(2)]
    else:
        raise InvalidOptionError(f"{what} must be a str like '25/s', got {value!r}")
    if not math.isfinite(per_second) or per_second <= 0:
        raise InvalidOptionError(
            f"{what} must be more than 0 and finite, got {value!r}: {_RATE_FORM}"
        )
    return per_second


def format_rate(per_second: float) -> str:
    """'25/s' for 25.0, '10/m' for 1/6: the shortest unit that gives a whole count."""
    for unit, seconds in (("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)):
        count = per_second * seconds
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}/{unit}"
    return f"{per_second:g}/s"


def check_burst(value: object, what: str = "burst") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 1:
        raise InvalidOptionError(f"{what} must be a finite number >= 1 (jobs), got {value!r}")
    return float(value)


def check_concurrency(value: object, what: str = "concurrency") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptionError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


def check_limit_name(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_LIMIT_NAME \
            or value != value.strip() or "\x00" in value:
        raise InvalidOptionError(
            f"a limit name is a non-empty str of at most {MAX_LIMIT_NAME} characters "
            f"without NUL or surrounding spaces, e.g. 'stripe', got {value!r}"
        )
    return value


def check_limit_key(value: object) -> str:
    """Limit keys are data (any text) but not NUL, and at most MAX_LIMIT_KEY characters."""
    if not isinstance(value, str):
        raise InvalidOptionError(f"limit_key must be a str, e.g. f'tenant:{{id}}', got {value!r}")
    if "\x00" in value:
        raise InvalidOptionError("limit_key may not hold a NUL character: encode it first")
    if len(value) > MAX_LIMIT_KEY:
        raise InvalidOptionError(
            f"limit_key is {len(value)} characters, at most {MAX_LIMIT_KEY} are accepted: "
            "use a shorter id (or a hash of the long one)"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOptionError("limit_key holds a lone surrogate, which cannot be stored") \
            from None
    return value


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """A limit as declared in code (`app.limit`, `@app.task(rate_limit=...)`)."""

    name: str
    rate: float | None = None
    """Starts per second for the whole limit (None: no rate bound)."""
    burst: float | None = None
    concurrency: int | None = None
    key_rate: float | None = None
    """Starts per second for each key (None: no per-key rate bound)."""
    key_burst: float | None = None
    key_concurrency: int | None = None
    queue: str | None = None
    """Jobs of this queue that name no other limit fall under this one."""
    weights: tuple[tuple[str, int], ...] = ()
    """(key, weight): a key of weight w gets w jobs per round of turns (default 1)."""


def build_limit(
    name: str,
    *,
    rate: object = None,
    burst: object = None,
    concurrency: object = None,
    key_rate: object = None,
    key_burst: object = None,
    key_concurrency: object = None,
    queue: str | None = None,
    weights: object = None,
) -> LimitSpec:
    """Check every number once, with errors that show a valid form."""
    name = check_limit_name(name)
    per_second = None if rate is None else parse_rate(rate)
    per_key = None if key_rate is None else parse_rate(key_rate, "key_rate")
    if burst is not None and per_second is None:
        raise InvalidOptionError("burst= needs rate= (burst is the rate's bucket size)")
    if key_burst is not None and per_key is None:
        raise InvalidOptionError("key_burst= needs key_rate=")
    spec = LimitSpec(
        name=name,
        rate=per_second,
        burst=None if per_second is None else (
            max(1.0, per_second) if burst is None else check_burst(burst)),
        concurrency=None if concurrency is None else check_concurrency(concurrency),
        key_rate=per_key,
        key_burst=None if per_key is None else (
            max(1.0, per_key) if key_burst is None else check_burst(key_burst, "key_burst")),
        key_concurrency=None if key_concurrency is None
        else check_concurrency(key_concurrency, "key_concurrency"),
        queue=queue,
        weights=_check_weights(weights),
    )
    return spec


def _check_weights(weights: object) -> tuple[tuple[str, int], ...]:
    if weights is None:
        return ()
    if not isinstance(weights, dict):
        raise InvalidOptionError(
            f"weights must be a dict like {{'tenant:vip': 3}}, got {weights!r}"
        )
    checked = []
    for key, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 1000:
            raise InvalidOptionError(
                f"the weight of key {key!r} must be a whole number from 1 to 1000, got {weight!r}"
            )
        checked.append((check_limit_key(key), weight))
    return tuple(sorted(checked))
