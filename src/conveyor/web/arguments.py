"""Checking JSON arguments against a task function's signature, naming the culprit.

`Task.enqueue` already refuses arguments that do not bind; over HTTP the
caller also needs to know *which* argument is wrong, and that a string was
sent where the function declares an int. Annotations this module does not
understand (custom classes, TypedDicts, generics beyond list/dict) are not
judged: the task itself remains the last check.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.task import Task
from conveyor.web.problems import Problem

_JSON_NAMES = {
    bool: "boolean", int: "integer", float: "number", str: "string",
    list: "array", dict: "object", type(None): "null",
}


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _fits(value: Any, hint: Any) -> bool | None:
    """True/False when the hint is understood, None when it is not judged."""
    if hint is Any or hint is object or hint is inspect.Parameter.empty:
        return True
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        verdicts = [_fits(value, member) for member in args]
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False
    if origin is typing.Literal:
        return any(value == choice and type(value) is type(choice) for choice in args)
    if hint in (list, tuple, Sequence) or origin in (list, tuple, Sequence):
        if not isinstance(value, list):
            return False
        if origin is list and len(args) == 1:
            verdicts = [_fits(item, args[0]) for item in value]
            return not any(v is False for v in verdicts)
        return True
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        if not isinstance(value, dict):
            return False
        if len(args) == 2:
            verdicts = [_fits(item, args[1]) for item in value.values()]
            return not any(v is False for v in verdicts)
        return True
    return None


def _hint_text(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def check_arguments(
    task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any], pointer: str = ""
) -> None:
    """Raise an `invalid-arguments` Problem naming the argument when these cannot be passed."""
    signature = inspect.signature(task.fn)
    params = list(signature.parameters.values())
    kind = inspect.Parameter
    positional = [p for p in params if p.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)]
    var_positional = any(p.kind is kind.VAR_POSITIONAL for p in params)
    var_keyword = any(p.kind is kind.VAR_KEYWORD for p in params)
    try:
        hints = typing.get_type_hints(task.fn)
    except Exception:  # unresolvable annotations: judge names only
        hints = {}

    def fail(argument: str, where: str, message: str) -> Problem:
        return Problem(
            "invalid-arguments", f"{task.name}: {message}", argument=argument,
            pointer=f"{pointer}/{where}",
        )

    supplied: dict[str, Any] = {}
    for i, value in enumerate(args):
        if i < len(positional):
            supplied[positional[i].name] = value
        elif not var_positional:
            raise fail(
                str(i), f"args/{i}",
                f"takes at most {len(positional)} positional argument(s), got {len(args)}",
            )
    for key, value in kwargs.items():
        param = signature.parameters.get(key)
        if key in supplied:
            raise fail(key, f"kwargs/{key}", f"argument {key!r} is given twice (args and kwargs)")
        if param is None or param.kind in (
            kind.POSITIONAL_ONLY, kind.VAR_POSITIONAL, kind.VAR_KEYWORD
        ):
            if var_keyword and param is None:
                continue
            known = ", ".join(
                p.name for p in params if p.kind not in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD)
            ) or "none"
            raise fail(key, f"kwargs/{key}", f"unknown argument {key!r} (known: {known})")
        supplied[key] = value
    for param in params:
        if param.kind in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD):
            continue
        if param.name not in supplied and param.default is inspect.Parameter.empty:
            where = "args" if param.kind is kind.POSITIONAL_ONLY else "kwargs"
            raise fail(param.name, where, f"missing required argument {param.name!r}")
    for name, value in supplied.items():
        hint = hints.get(name, inspect.Parameter.empty)
        if _fits(value, hint) is False:
            index = next((i for i, p in enumerate(positional) if p.name == name), None)
            where = f"args/{index}" if index is not None and index < len(args) else f"kwargs/{name}"
            raise fail(
                name, where,
                f"argument {name!r} must be {_hint_text(hint)}, got {_json_name(value)}",
            )
