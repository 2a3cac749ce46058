"""Checking a job's arguments against its task function's signature and annotations.

One checker per task, built when the task is declared and used by every way
in: `Task.enqueue`, `enqueue_many`, and the HTTP API. So `enqueue("42")` for
an `int` parameter is refused in Python exactly as it is over HTTP, with the
same message, naming the argument.

What the annotations mean (JSON-compatible ones are judged):

| annotation                          | accepts                                          |
|-------------------------------------|--------------------------------------------------|
| none, `Any`, `object`               | any JSON                                         |
| `int`                               | an int (not a bool)                              |
| `float`                             | an int or a float (not a bool)                   |
| `bool`, `str`, `None`               | exactly that                                     |
| `list[X]`, `Sequence[X]`, `tuple`   | a list (or tuple), each item fitting X            |
| `dict[str, X]`, `Mapping[str, X]`   | a dict, each value fitting X                     |
| `X | Y`, `Optional[X]`              | what fits any member                             |
| `Literal[...]`                      | one of the values (of the same type)             |
| a `TypedDict`                       | a dict with its required keys, no unknown keys   |

Anything else (custom classes, generics this module does not know) is not
judged: the task itself remains the last check. Annotations that cannot be
resolved (a forward reference to a name that does not exist) leave only the
names and counts checked.
"""

from __future__ import annotations

import inspect
import threading
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, is_typeddict

from conveyor.errors import InvalidArgumentsError

Fits = Callable[[Any], bool]
"""True when the value fits the annotation it was built from."""

_JSON_NAMES = {
    bool: "boolean", int: "integer", float: "number", str: "string",
    list: "array", tuple: "array", dict: "object", type(None): "null",
}


def json_name(value: Any) -> str:
    """The JSON name of a value's type (`integer`, `string`, …), else its Python type name."""
    return _JSON_NAMES.get(type(value), type(value).__name__)


def hint_text(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("collections.abc.", "")


def _is_int(value: Any) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _is_float(value: Any) -> bool:
    return type(value) is float or (
        isinstance(value, int | float) and not isinstance(value, bool)
    )


_SIMPLE: dict[Any, Fits] = {
    int: _is_int,
    float: _is_float,
    bool: lambda v: isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    type(None): lambda v: v is None,
    None: lambda v: v is None,
}


def compile_hint(hint: Any) -> Fits | None:
    """A predicate for values of `hint`, or None when every value is accepted (not judged)."""
    if hint is Any or hint is object or hint is inspect.Parameter.empty:
        return None
    simple = _SIMPLE.get(hint) if _hashable(hint) else None
    if simple is not None:
        return simple
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return compile_hint(args[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [compile_hint(member) for member in args]
        if any(m is None for m in members):
            return None
        checks = tuple(m for m in members if m is not None)
        return lambda v: any(check(v) for check in checks)
    if origin is typing.Literal:
        choices = tuple((type(choice), choice) for choice in args)
        return lambda v: any(type(v) is t and v == c for t, c in choices)
    if hint in (list, tuple, Sequence) or origin in (list, tuple, Sequence):
        item = compile_hint(args[0]) if origin in (list, Sequence) and len(args) == 1 else None
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item = compile_hint(args[0])
        if item is None:
            return lambda v: isinstance(v, list | tuple)
        each = item
        return lambda v: isinstance(v, list | tuple) and all(each(x) for x in v)
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        value = compile_hint(args[1]) if len(args) == 2 else None
        if value is None:
            return lambda v: isinstance(v, dict)
        each_value = value
        return lambda v: isinstance(v, dict) and all(each_value(x) for x in v.values())
    if is_typeddict(hint):
        return _typed_dict(hint)
    return None


def _hashable(hint: Any) -> bool:
    try:
        hash(hint)
    except TypeError:
        return False
    return True


def _typed_dict(hint: Any) -> Fits | None:
    try:
        fields = typing.get_type_hints(hint, include_extras=True)
    except Exception:  # unresolvable: judge it as a plain dict
        return lambda v: isinstance(v, dict)
    total = getattr(hint, "__total__", True)
    required_names = set()
    checks: dict[str, Fits | None] = {}
    for name, field in fields.items():
        origin = typing.get_origin(field)
        if origin is typing.NotRequired or origin is typing.Required:
            needed = origin is typing.Required
            field = typing.get_args(field)[0]
        else:  # (with postponed annotations __required_keys__ misses NotRequired: judge here)
            needed = total
        if needed:
            required_names.add(name)
        checks[name] = compile_hint(field)
    required = frozenset(required_names)

    def fits(value: Any) -> bool:
        if not isinstance(value, dict) or not required <= value.keys():
            return False
        for key, item in value.items():
            if key not in checks:
                return False
            check = checks[key]
            if check is not None and not check(item):
                return False
        return True

    return fits


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    index: int | None
    """Position among the positional parameters; None for keyword-only."""
    keyword: bool
    """May be given by name (not positional-only)."""
    required: bool
    fits: Fits | None
    hint: Any


CONTEXT_MARKER = "__conveyor_job_context__"
"""Set on `conveyor.steps.JobContext`: a parameter annotated with it is handed the job's
context by the worker, and is no argument of the job (core cannot import the class)."""


def _is_context(hint: Any, raw: Any) -> bool:
    if getattr(hint, CONTEXT_MARKER, False):
        return True
    # An annotation that does not resolve (a postponed name): judge it by its text.
    text = raw if isinstance(raw, str) else ""
    return text == "JobContext" or text.endswith(".JobContext")


def context_parameter(fn: Callable[..., Any]) -> tuple[str, int | None] | None:
    """`fn`'s parameter annotated `JobContext`, if it has one: its name and its position
    among the positional parameters (None for keyword-only)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    kind = inspect.Parameter
    position = 0
    for p in signature.parameters.values():
        positional = p.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)
        if _is_context(hints.get(p.name), p.annotation):
            return p.name, position if positional else None
        position += positional
    return None


class ArgumentChecker:
    """The checks of one task's arguments, built once; `check` raises `InvalidArgumentsError`.

    Built when the task is declared; annotations that do not resolve yet (a
    forward reference to a name defined after the task) are resolved at the
    first check instead.
    """

    def __init__(self, fn: Callable[..., Any], task_name: str) -> None:
        self.fn = fn
        self.task_name = task_name
        self._lock = threading.Lock()
        self._ready = False
        self._positional: tuple[_Param, ...] = ()
        self._by_name: dict[str, _Param] = {}
        self._required: tuple[_Param, ...] = ()
        self._var_positional: Fits | bool | None = False
        self._var_keyword: Fits | bool | None = False
        self._var_positional_hint: Any = None
        self._var_keyword_hint: Any = None
        self._known = "none"
        self._judged = False
        self._ready = self._build(final=False)

    def _build(self, *, final: bool) -> bool:
        signature = inspect.signature(self.fn)
        try:
            hints = typing.get_type_hints(self.fn, include_extras=True)
        except Exception:
            if not final:  # perhaps a name defined after the task: try again at first use
                return False
            hints = {}  # unresolvable annotations: judge names and counts only
        kind = inspect.Parameter
        positional: list[_Param] = []
        by_name: dict[str, _Param] = {}
        names: list[str] = []
        for p in signature.parameters.values():
            hint = hints.get(p.name, inspect.Parameter.empty)
            if _is_context(hint, p.annotation):
                continue  # handed in by the worker, never given by the caller
            if p.kind is kind.VAR_POSITIONAL:
                self._var_positional = compile_hint(hint) or True
                self._var_positional_hint = hint
                continue
            if p.kind is kind.VAR_KEYWORD:
                self._var_keyword = compile_hint(hint) or True
                self._var_keyword_hint = hint
                continue
            names.append(p.name)
            is_positional = p.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)
            param = _Param(
                name=p.name, index=len(positional) if is_positional else None,
                keyword=p.kind is not kind.POSITIONAL_ONLY,
                required=p.default is inspect.Parameter.empty,
                fits=compile_hint(hint), hint=hint,
            )
            if is_positional:
                positional.append(param)
            by_name[p.name] = param
        self._positional = tuple(positional)
        self._by_name = by_name
        self._required = tuple(p for p in by_name.values() if p.required)
        self._known = ", ".join(names) or "none"
        self._judged = any(p.fits is not None for p in by_name.values()) or any(
            callable(v) for v in (self._var_positional, self._var_keyword)
        )
        return True

    def _fail(self, argument: str, where: str, message: str) -> InvalidArgumentsError:
        return InvalidArgumentsError(f"{self.task_name}: {message}", argument=argument,
                                     where=where)

    def check(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise `InvalidArgumentsError` naming the argument when these cannot be passed."""
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._ready = self._build(final=True)
        positional = self._positional
        given = len(args)
        if given > len(positional) and self._var_positional is False:
            raise self._fail(
                str(len(positional)), f"args/{len(positional)}",
                f"takes at most {len(positional)} positional argument(s), got {given}",
            )
        by_name = self._by_name
        for key in kwargs:
            param = by_name.get(key)
            if param is None or not param.keyword:
                if param is None and self._var_keyword is not False:
                    continue
                raise self._fail(key, f"kwargs/{key}",
                                 f"unknown argument {key!r} (known: {self._known})")
            if param.index is not None and param.index < given:
                raise self._fail(key, f"kwargs/{key}",
                                 f"argument {key!r} is given twice (args and kwargs)")
        for param in self._required:
            if (param.index is None or param.index >= given) and param.name not in kwargs:
                where = "args" if not param.keyword else "kwargs"
                raise self._fail(param.name, where,
                                 f"missing required argument {param.name!r}")
        if not self._judged:
            return
        for i, value in enumerate(args):
            if i < len(positional):
                param = positional[i]
                if param.fits is not None and not param.fits(value):
                    raise self._wrong(param.name, f"args/{i}", param.hint, value)
            elif callable(self._var_positional) and not self._var_positional(value):
                raise self._wrong(str(i), f"args/{i}", self._var_positional_hint, value)
        for key, value in kwargs.items():
            param = by_name.get(key)
            if param is not None:
                if param.fits is not None and not param.fits(value):
                    raise self._wrong(key, f"kwargs/{key}", param.hint, value)
            elif callable(self._var_keyword) and not self._var_keyword(value):
                raise self._wrong(key, f"kwargs/{key}", self._var_keyword_hint, value)

    def _wrong(self, name: str, where: str, hint: Any, value: Any) -> InvalidArgumentsError:
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        return self._fail(name, where,
                          f"argument {name!r} must be {hint_text(hint)}, got {json_name(value)}")


__all__ = [
    "CONTEXT_MARKER", "ArgumentChecker", "compile_hint", "context_parameter", "hint_text",
    "json_name",
]
