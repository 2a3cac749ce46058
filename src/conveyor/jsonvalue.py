"""The JSON conveyor stores: what it accepts, how it writes it, how it reads it back.

A core module (it imports only `conveyor.errors`). Every backend stores the
same values, so the rules are the strictest of them, applied alike:

- text holds no NUL character and no lone surrogate (half of a UTF-16 pair,
  e.g. a file name decoded with ``surrogateescape``): PostgreSQL cannot store
  them, and a UTF-8 page or API answer cannot carry them;
- numbers are finite (JSON has no NaN or infinity);
- values nest at most `MAX_DEPTH` levels (arguments are data, not recursion).

Enqueue refuses what breaks a rule (`check_json`, `check_text`). A result or
error that breaks one is stored with U+FFFD in place of the offending
characters (`storable_json`): refusing it would leave the job running until
its lease expires, then run it again, for ever. Reading is lenient
(`loads_readable`): a row written before these rules (or by hand) is shown with
U+FFFD rather than crashing the page, the API or the CLI that reads it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from conveyor.errors import SerializationError

MAX_DEPTH = 64
"""Deepest nesting of lists and objects accepted in arguments (the API's body limit too)."""

_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|d[89a-f][0-9a-f]{2})", re.IGNORECASE)
"""JSON escapes of NUL and of surrogates (a cheap test before an exact one). A valid
pair (an emoji written by `dumps`) matches too; the exact test then lets it through."""

_HINTS = {
    "set": "pass a list",
    "frozenset": "pass a list",
    "bytes": "pass text (e.g. base64)",
    "datetime": "pass .isoformat()",
    "date": "pass .isoformat()",
    "Decimal": "pass str(value)",
    "UUID": "pass str(value)",
}


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
"""Built once: `json.dumps` with these options builds an encoder per call, which cost
about as much as the encoding of a job's arguments (thread-safe: it keeps no state)."""


def dumps(value: Any) -> str:
    """Compact JSON, as stored (non-ASCII written as escapes)."""
    return _ENCODER.encode(value)


_NO_ARGUMENTS = "[[],{}]"
_C_ENCODE = None if c_make_encoder is None else c_make_encoder(
    None, _ENCODER.default, encode_basestring_ascii, None, ":", ",", False, False, False
)
"""The C encoder `dumps` builds on each call, built once, for values already checked
(`_check` refuses cycles by their depth, and non-finite numbers): without the cycle
markers it keeps no state between calls. Same output as `dumps`."""


def _encode_checked(value: Any) -> str:
    if _C_ENCODE is None:  # pragma: no cover - an interpreter without the C accelerator
        return dumps(value)
    return "".join(_C_ENCODE(value, 0))


def storable_text(text: str) -> bool:
    """True when `text` holds no NUL character and no lone surrogate."""
    return _UNSTORABLE_CHAR.search(text) is None


def check_text(value: str | None, what: str) -> None:
    """Refuse text that cannot be stored alike on every backend."""
    if value is not None and not storable_text(value):
        raise SerializationError(
            f"{what} {value!r} holds a NUL character or a lone surrogate, which cannot be "
            "stored: remove it (encode binary data, e.g. as base64)"
        )


def check_json(value: Any, where: str, *, text: bool = True) -> None:
    """Refuse anything that does not survive a JSON round trip alike on every backend,
    naming where it is.

    `text=False` lets NUL characters and lone surrogates through (for results, which
    `storable_json` repairs instead).
    """
    _check(value, where, 0, text)


def check_arguments(args: Sequence[Any], kwargs: Mapping[str, Any], where: str) -> None:
    """Refuse (and name) any argument that is not JSON or nests too deep; text is
    checked when the arguments are encoded (`encode_arguments`)."""
    _check_arguments(args, kwargs, where, text=False)


def encode_arguments(
    args: Sequence[Any], kwargs: Mapping[str, Any], where: str, *,
    structure_checked: bool = False,
) -> str:
    """The stored JSON text of a job's ``[args, kwargs]``, refusing (and naming) any
    argument `check_json` would refuse. One walk and one scan of the text per job:
    text is checked on the encoded JSON, and walked again only to name the culprit.
    `structure_checked`: `check_arguments` already walked them (skip that walk)."""
    if not structure_checked:
        _check_arguments(args, kwargs, where, text=False)
    if not args and not kwargs:
        return _NO_ARGUMENTS
    encoded = _encode_checked([list(args), dict(kwargs)])
    if not json_text_storable(encoded):
        _check_arguments(args, kwargs, where, text=True)  # raises, naming the culprit
    return encoded


def _check_arguments(
    args: Sequence[Any], kwargs: Mapping[str, Any], where: str, *, text: bool
) -> None:
    for i, arg in enumerate(args):
        _check(arg, f"{where}: argument {i}", 0, text)
    for key, arg in kwargs.items():
        if text and not storable_text(key):
            raise SerializationError(
                f"{where}: an argument name holds a NUL character or a lone surrogate, "
                "which cannot be stored: remove it"
            )
        _check(arg, f"{where}: argument {key!r}", 0, text)


def _check(value: Any, where: str, depth: int, text: bool) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        if text and not storable_text(value):
            raise SerializationError(
                f"{where} holds a NUL character or a lone surrogate, which cannot be stored: "
                "encode binary data (e.g. base64) before enqueueing"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f"{where} is {value!r}, which JSON cannot hold")
        return
    if isinstance(value, list | tuple | dict):
        if depth >= MAX_DEPTH:
            raise SerializationError(
                f"{where} nests deeper than {MAX_DEPTH} levels of lists and objects: "
                "flatten it"
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise SerializationError(
                        f"{where} has the key {key!r} ({type(key).__name__}); JSON object keys "
                        "must be str"
                    )
                if text and not storable_text(key):
                    raise SerializationError(
                        f"{where} has a key holding a NUL character or a lone surrogate, "
                        "which cannot be stored: remove it"
                    )
                _check(item, f"{where}[{key!r}]", depth + 1, text)
        else:
            for i, item in enumerate(value):
                _check(item, f"{where}[{i}]", depth + 1, text)
        return
    hint = _HINTS.get(
        type(value).__name__, "pass plain JSON data (dict, list, str, int, float, bool, None)"
    )
    raise SerializationError(
        f"{where} is a {type(value).__name__}, which is not JSON: {hint}. "
        "conveyor stores arguments as data, never as pickled objects"
    )


def json_text_storable(text: str) -> bool:
    """True when JSON text written by `dumps` holds no NUL and no lone surrogate."""
    return (
        "\\u" not in text
        or _SUSPECT_ESCAPE.search(text) is None
        or storable_value(json.loads(text))
    )


def storable_json(text: str | None) -> str | None:
    """JSON text with U+FFFD in place of NUL characters and lone surrogates."""
    if text is None or "\\u" not in text or _SUSPECT_ESCAPE.search(text) is None:
        return text
    value = json.loads(text)
    return text if storable_value(value) else dumps(readable(value))


def loads_readable(text: str | bytes) -> Any:
    """Decode stored JSON for display: never raises on a character that cannot be shown."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    value = json.loads(text)
    if "\\u" in text and _SUSPECT_ESCAPE.search(text) is not None and not storable_value(value):
        return readable(value)
    return value


def readable(value: Any) -> Any:
    """`value` with U+FFFD in place of every NUL character and lone surrogate."""
    if isinstance(value, str):
        return value if storable_text(value) else _UNSTORABLE_CHAR.sub("\ufffd", value)
    if isinstance(value, list):
        return [readable(v) for v in value]
    if isinstance(value, dict):
        return {readable(k): readable(v) for k, v in value.items()}
    return value


def storable_value(value: Any) -> bool:
    """True when no text in `value` (keys included) holds a NUL or a lone surrogate."""
    # Iterative: a stored value may nest deeper than the interpreter's recursion limit.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not storable_text(item):
                return False
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, v in item.items():
                if not storable_text(key):
                    return False
                stack.append(v)
    return True
