"""What readers show of a job's arguments and result: secrets redacted, ciphertext named.

A task declares the parameters that hold secrets (`@app.task(secret=["card_number"])`,
or `card_number: Annotated[str, Secret]`);
every reader (the API's job responses, the dashboard, the CLI, the worker's
error records) shows their values as `•••`, whether or not encryption is on.
An encrypted payload (see `conveyor.encryption`) is shown as
`{"$encrypted": {"key": "<key id>"}}`: which key, never the ciphertext.

The declarations are kept per task name for the whole process (the union
over every app that declares the task), so a reader that only has a job
record, not the app, still redacts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from conveyor.types import JobRecord

REDACTED = "•••"


class _SecretMarker:
    """`Annotated[str, Secret]`: this parameter holds a secret (see the module docstring)."""

    def __repr__(self) -> str:
        return "Secret"


Secret = _SecretMarker()
ENVELOPE = "$encrypted"
"""The one key of a stored encrypted payload: `{"$encrypted": {"key": ..., ...}}`."""

_lock = threading.Lock()
_secret: dict[str, frozenset[str]] = {}
_positions: dict[str, tuple[str, ...]] = {}


def declare(task: str, secret: Iterable[str], positional: Iterable[str]) -> None:
    """Record that `task`'s parameters `secret` hold secrets (`positional`: the names of its
    positional parameters, in order, to find secrets passed by position)."""
    names = frozenset(secret)
    if not names:
        return
    with _lock:
        _secret[task] = _secret.get(task, frozenset()) | names
        _positions.setdefault(task, tuple(positional))


def secret_names(task: str) -> frozenset[str]:
    return _secret.get(task, frozenset())


def envelope_key(value: Any) -> str | None:
    """The key id of an encrypted payload, or None when `value` is not one."""
    if type(value) is dict and len(value) == 1:
        inner = value.get(ENVELOPE)
        if isinstance(inner, dict) and isinstance(inner.get("key"), str):
            return str(inner["key"])
    return None


def shown_value(value: Any) -> Any:
    """A result as readers show it: an encrypted one names its key only."""
    key = envelope_key(value)
    return value if key is None else {ENVELOPE: {"key": key}}


def shown_arguments(
    task: str, args: list[Any], kwargs: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Arguments as readers show them: secrets as `•••`, an encrypted payload by its key."""
    if not args:
        key = envelope_key(dict(kwargs))
        if key is not None:
            return [], {ENVELOPE: {"key": key}}
    names = _secret.get(task)
    if not names:
        return list(args), dict(kwargs)
    positions = _positions.get(task, ())
    shown_args = [
        REDACTED if i < len(positions) and positions[i] in names else value
        for i, value in enumerate(args)
    ]
    shown_kwargs = {k: REDACTED if k in names else v for k, v in kwargs.items()}
    return shown_args, shown_kwargs


def shown_record(record: JobRecord) -> JobRecord:
    """A copy of `record` for display: arguments and result as `shown_*` make them."""
    args, kwargs = shown_arguments(record.task, record.args, record.kwargs)
    result = shown_value(record.result)
    if args == record.args and kwargs == record.kwargs and result is record.result:
        return record
    return replace(record, args=args, kwargs=kwargs, result=result)


def secret_values(task: str, args: list[Any], kwargs: Mapping[str, Any]) -> list[str]:
    """The text of each secret argument (4 characters or more), to scrub from messages."""
    names = _secret.get(task)
    if not names:
        return []
    positions = _positions.get(task, ())
    values = [v for i, v in enumerate(args) if i < len(positions) and positions[i] in names]
    values += [v for k, v in kwargs.items() if k in names]
    texts = {v if isinstance(v, str) else repr(v) for v in values if v is not None}
    return sorted((t for t in texts if len(t) >= 4), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


__all__ = [
    "ENVELOPE", "REDACTED", "Secret", "declare", "envelope_key", "scrub", "secret_names",
    "secret_values", "shown_arguments", "shown_record", "shown_value",
]
