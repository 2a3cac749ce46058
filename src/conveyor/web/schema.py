"""A small JSON Schema checker for the subset the API's own schemas use.

The API describes every request body, query parameter and response with a
schema dict; the same dict validates requests at run time and is published in
the OpenAPI document, so the document cannot drift from the code. The subset:
`type` (one name or a list), `properties`, `required`, `additionalProperties`,
`minProperties`, `items`, `prefixItems`, `enum`, `const`, `minimum`, `maximum`,
`minLength`, `maxLength`, `pattern`, `minItems`, `maxItems`, `anyOf`, `oneOf`,
`not`, `format: date-time`, and the boolean schemas `true` and `false`.
Anything else in a schema is documentation.

Numbers follow JSON Schema: 92.0 is an integer. `normalize` turns such a
value into the int the handlers expect wherever the schema says integer.
Patterns are written in the common subset of ECMA 262 and Python regular
expressions, and are searched (not matched), as JSON Schema says.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from conveyor.arguments import context_parameter

Schema = Mapping[str, Any]

NO_NUL = "^[^\\u0000]*$"
"""The pattern of text the job database can store: anything but NUL."""


class SchemaViolation:
    """One reason a value does not fit: where (a JSON pointer) and why."""

    __slots__ = ("message", "pointer")

    def __init__(self, pointer: str, message: str) -> None:
        self.pointer = pointer
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"pointer": self.pointer or "/", "message": self.message}

    def __repr__(self) -> str:
        return f"SchemaViolation({self.pointer!r}, {self.message!r})"


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _fits_type(value: Any, wanted: str) -> bool:
    actual = _type_of(value)
    if wanted == "integer" and actual == "number":
        return math.isfinite(value) and float(value).is_integer()
    if wanted == "number":
        return actual in ("integer", "number") and (
            actual == "integer" or math.isfinite(value)
        )
    return actual == wanted


def parse_datetime(text: str) -> datetime | None:
    """An RFC 3339 date-time with a UTC offset, or None."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    # ECMA 262's `$` (without the m flag) matches only at the very end; Python's also
    # before a final line break.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + "\\Z"
    return re.compile(pattern)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def validate(value: Any, schema: Schema | bool, pointer: str = "") -> list[SchemaViolation]:
    """Every way `value` breaks `schema` (empty when it fits)."""
    if schema is True:
        return []
    if schema is False:
        return [SchemaViolation(pointer, "is not allowed here")]
    assert isinstance(schema, Mapping)
    problems: list[SchemaViolation] = []
    wanted = schema.get("type")
    if wanted is not None:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        if not any(_fits_type(value, name) for name in names):
            problems.append(SchemaViolation(
                pointer, f"must be {' or '.join(names)}, got {_type_of(value)}"
            ))
            return problems
    if "const" in schema and not _equal(value, schema["const"]):
        problems.append(SchemaViolation(pointer, f"must be {schema['const']!r}"))
    if "enum" in schema and not any(_equal(value, c) for c in schema["enum"]):
        choices = ", ".join(repr(c) for c in schema["enum"])
        problems.append(SchemaViolation(pointer, f"must be one of {choices}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(SchemaViolation(pointer, f"must be >= {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(SchemaViolation(pointer, f"must be <= {schema['maximum']}"))
    if isinstance(value, str):
        problems.extend(_string_problems(value, schema, pointer))
    if isinstance(value, list):
        problems.extend(_array_problems(value, schema, pointer))
    if isinstance(value, dict):
        problems.extend(_object_problems(value, schema, pointer))
    problems.extend(_combined_problems(value, schema, pointer))
    return problems


def _string_problems(value: str, schema: Schema, pointer: str) -> list[SchemaViolation]:
    problems: list[SchemaViolation] = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(SchemaViolation(
            pointer, f"must be at least {schema['minLength']} character(s)"
        ))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(SchemaViolation(
            pointer, f"must be at most {schema['maxLength']} characters"
        ))
    if "pattern" in schema and not _regex(schema["pattern"]).search(value):
        problems.append(SchemaViolation(pointer, schema.get(
            "x-pattern-message", f"must match the pattern {schema['pattern']}"
        )))
    if schema.get("format") == "date-time" and parse_datetime(value) is None:
        problems.append(SchemaViolation(
            pointer, "must be an RFC 3339 date-time with an offset, e.g. 2030-01-02T03:04:05Z"
        ))
    return problems


def _array_problems(value: list[Any], schema: Schema, pointer: str) -> list[SchemaViolation]:
    problems: list[SchemaViolation] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        problems.append(
            SchemaViolation(pointer, f"needs at least {schema['minItems']} item(s)")
        )
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(SchemaViolation(pointer, f"takes at most {schema['maxItems']} items"))
    prefix = schema.get("prefixItems", ())
    for i, (item, item_schema) in enumerate(zip(value, prefix, strict=False)):
        problems.extend(validate(item, item_schema, f"{pointer}/{i}"))
    items = schema.get("items")
    if items is not None:
        for i, item in enumerate(value[len(prefix):], start=len(prefix)):
            problems.extend(validate(item, items, f"{pointer}/{i}"))
    return problems


def _object_problems(value: dict[str, Any], schema: Schema, pointer: str) -> list[SchemaViolation]:
    problems: list[SchemaViolation] = []
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        problems.append(SchemaViolation(
            pointer, f"needs at least {schema['minProperties']} member(s)"
        ))
    properties: Mapping[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            problems.append(SchemaViolation(f"{pointer}/{_escape(name)}", "is required"))
    extra = schema.get("additionalProperties", True)
    names = schema.get("propertyNames")
    for key, item in value.items():
        where = f"{pointer}/{_escape(key)}"
        if names is not None:
            problems.extend(validate(key, names, where))
        if key in properties:
            problems.extend(validate(item, properties[key], where))
        elif extra is False:
            known = ", ".join(sorted(properties)) or "none"
            problems.append(SchemaViolation(where, f"is not a known field (known: {known})"))
        elif isinstance(extra, Mapping):
            problems.extend(validate(item, extra, where))
    return problems


def _combined_problems(value: Any, schema: Schema, pointer: str) -> list[SchemaViolation]:
    problems: list[SchemaViolation] = []
    if "not" in schema and not validate(value, schema["not"], pointer):
        problems.append(SchemaViolation(pointer, schema.get(
            "x-not-message", "matches a form that is not allowed here"
        )))
    for keyword in ("anyOf", "oneOf"):
        if keyword not in schema:
            continue
        found = [validate(value, branch, pointer) for branch in _candidates(value, schema,
                                                                            keyword)]
        fitting = sum(1 for f in found if not f)
        if fitting == 0:
            hint = schema.get("x-choice-message")
            if hint or not found:
                problems.append(SchemaViolation(pointer, hint or "fits none of the allowed forms"))
            else:
                closest: list[SchemaViolation] = min(found, key=len)
                problems.extend(closest)
        elif keyword == "oneOf" and fitting > 1:
            problems.append(SchemaViolation(pointer, "fits more than one of the allowed forms"))
    return problems


def _candidates(value: Any, schema: Schema, keyword: str) -> list[Schema | bool]:
    """The branches that may fit: with a discriminator whose property every branch pins
    with a `const`, only those pinning the value's (the others cannot fit)."""
    branches: list[Schema | bool] = list(schema[keyword])
    discriminator = schema.get("discriminator")
    if not isinstance(discriminator, Mapping) or not isinstance(value, dict):
        return branches
    prop = discriminator["propertyName"]
    pinned = [b.get("properties", {}).get(prop) if isinstance(b, Mapping) else None
              for b in branches]
    if not all(isinstance(p, Mapping) and "const" in p for p in pinned):
        return branches
    chosen = [b for b, p in zip(branches, pinned, strict=True)
              if p is not None and prop in value and _equal(value[prop], p["const"])]
    return chosen


def normalize(value: Any, schema: Schema | bool) -> Any:
    """`value` (which fits `schema`) with integral numbers as ints where it says integer."""
    if not isinstance(schema, Mapping):
        return value
    wanted = schema.get("type")
    names = [wanted] if isinstance(wanted, str) else list(wanted or ())
    if (isinstance(value, float) and value.is_integer() and "integer" in names
            and "number" not in names):
        return int(value)
    if isinstance(value, list):
        prefix = schema.get("prefixItems", ())
        items = schema.get("items")
        value = [
            normalize(item, prefix[i] if i < len(prefix) else items if items is not None
                      else True)
            for i, item in enumerate(value)
        ]
    elif isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        value = {
            key: normalize(item, properties.get(key, extra)) for key, item in value.items()
        }
    for keyword in ("anyOf", "oneOf"):
        for branch in _candidates(value, schema, keyword) if keyword in schema else ():
            if not validate(value, branch):
                value = normalize(value, branch)
                break
    return value


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


# -- building schemas --------------------------------------------------------------
def obj(
    properties: Mapping[str, Schema], *, required: tuple[str, ...] = (), description: str = ""
) -> dict[str, Any]:
    """A closed object: unknown fields are refused."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": dict(properties),
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def text(
    min_length: int = 1, max_length: int = 255, *, message: str = "must be text without NUL",
    **extra: Any,
) -> dict[str, Any]:
    """A string of `min_length` to `max_length` characters, without NUL (or matching the
    `pattern` given in `extra`, which says why with `message`)."""
    return {"type": "string", "minLength": min_length, "maxLength": max_length,
            "pattern": NO_NUL, "x-pattern-message": message, **extra}


def nullable(schema: Schema) -> dict[str, Any]:
    result = dict(schema)
    kind = result.get("type")
    if isinstance(kind, str):
        result["type"] = [kind, "null"]
    return result


# -- schemas from task signatures -------------------------------------------------------
ANY_JSON: dict[str, Any] = {"description": "Any JSON (text without NUL)."}


def hint_schema(hint: Any) -> Schema | bool:
    """What JSON fits a parameter annotated `hint`: the JSON types (int, float, str, bool,
    None, list[...], dict[str, ...], unions, Literal); anything else is any JSON."""
    if hint is Any or hint is object or hint is inspect.Parameter.empty:
        return True
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint is None or hint is type(None):
        return {"type": "null"}
    if hint in simple:
        schema: dict[str, Any] = {"type": simple[hint]}
        if hint is str:
            schema["pattern"] = NO_NUL
        return schema
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        members = [hint_schema(member) for member in args]
        if any(m is True for m in members):
            return True
        return {"anyOf": members}
    if origin is typing.Literal:
        choices = [c for c in args if c is None or type(c) in simple]
        if not choices:
            return False
        return {"anyOf": [
            {"type": "null"} if c is None else {"type": simple[type(c)], "const": c}
            for c in choices
        ]}
    if hint in (list, tuple, Sequence) or origin in (list, tuple, Sequence):
        if origin is list and len(args) == 1:
            return {"type": "array", "items": hint_schema(args[0])}
        return {"type": "array"}
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        if len(args) == 2:
            return {"type": "object", "additionalProperties": hint_schema(args[1])}
        return {"type": "object"}
    return True


def call_schemas(fn: Callable[..., Any], max_args: int) -> list[Schema | bool]:
    """The ways to call `fn` with JSON `args` and `kwargs`, one schema each (told apart by
    the number of positional arguments), as the enqueue check judges them: no argument
    twice, none unknown, every required one given, each fitting its annotation."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return [{}]
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: names only
        hints = {}
    kind = inspect.Parameter
    context = context_parameter(fn)  # handed in by the worker: no argument of the job
    params = [p for p in signature.parameters.values()
              if context is None or p.name != context[0]]
    positional = [p for p in params if p.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)]
    var_positional = any(p.kind is kind.VAR_POSITIONAL for p in params)
    var_keyword = any(p.kind is kind.VAR_KEYWORD for p in params)

    def of(p: inspect.Parameter) -> Schema | bool:
        return hint_schema(hints.get(p.name, inspect.Parameter.empty))

    forms: list[Schema | bool] = []
    for k in range(len(positional) + 1):
        rest = [p for p in params if p.kind is kind.KEYWORD_ONLY or p in positional[k:]]
        if any(p.kind is kind.POSITIONAL_ONLY and p.default is p.empty for p in rest):
            continue  # a positional-only parameter cannot be given by keyword
        keywords = [p for p in rest if p.kind is not kind.POSITIONAL_ONLY]
        # With **kwargs, only a parameter already given by position cannot come again by
        # name; any other name (a positional-only one, `args`) lands in **kwargs, as in Python.
        refused = [p.name for p in positional[:k] if p.kind is kind.POSITIONAL_OR_KEYWORD]
        properties: dict[str, Any] = {p.name: of(p) for p in keywords}
        if var_keyword:
            properties.update((name, False) for name in refused)
        kwargs: dict[str, Any] = {
            "type": "object", "properties": properties,
            "additionalProperties": var_keyword,
        }
        required = [p.name for p in keywords if p.default is p.empty]
        if required:
            kwargs["required"] = required
        args: dict[str, Any] = {"type": "array"}
        if k:
            args["prefixItems"] = [of(p) for p in positional[:k]]
        last = k == len(positional) and var_positional
        if last:
            args.update(minItems=k, maxItems=max_args, items=True)
        else:
            args.update(minItems=k, maxItems=k)
        form: dict[str, Any] = {"properties": {"args": args, "kwargs": kwargs}}
        needed = (["args"] if k else []) + (["kwargs"] if required else [])
        if needed:
            form["required"] = needed
        forms.append(form)
    return forms or [False]
