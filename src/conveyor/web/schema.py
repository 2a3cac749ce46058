"""A small JSON Schema checker for the subset the API's own schemas use.

The API describes every request body, query parameter and response with a
schema dict; the same dict validates requests at run time and is published in
the OpenAPI document, so the document cannot drift from the code. The subset:
`type` (one name or a list), `properties`, `required`, `additionalProperties`,
`items`, `enum`, `minimum`, `maximum`, `minLength`, `maxLength`, `minItems`,
`maxItems`, `format: date-time`. Anything else in a schema is documentation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

Schema = Mapping[str, Any]


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


def validate(value: Any, schema: Schema, pointer: str = "") -> list[SchemaViolation]:
    """Every way `value` breaks `schema` (empty when it fits)."""
    problems: list[SchemaViolation] = []
    wanted = schema.get("type")
    if wanted is not None:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        if not any(_fits_type(value, name) for name in names):
            problems.append(SchemaViolation(
                pointer, f"must be {' or '.join(names)}, got {_type_of(value)}"
            ))
            return problems
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(repr(c) for c in schema["enum"])
        problems.append(SchemaViolation(pointer, f"must be one of {choices}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(SchemaViolation(pointer, f"must be >= {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(SchemaViolation(pointer, f"must be <= {schema['maximum']}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(SchemaViolation(
                pointer, f"must be at least {schema['minLength']} character(s)"
            ))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(SchemaViolation(
                pointer, f"must be at most {schema['maxLength']} characters"
            ))
        if schema.get("format") == "date-time" and parse_datetime(value) is None:
            problems.append(SchemaViolation(
                pointer, "must be an RFC 3339 date-time with an offset, e.g. 2030-01-02T03:04:05Z"
            ))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(
                SchemaViolation(pointer, f"needs at least {schema['minItems']} item(s)")
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(SchemaViolation(pointer, f"takes at most {schema['maxItems']} items"))
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                problems.extend(validate(item, items, f"{pointer}/{i}"))
    if isinstance(value, dict):
        properties: Mapping[str, Schema] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                problems.append(SchemaViolation(f"{pointer}/{_escape(name)}", "is required"))
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            where = f"{pointer}/{_escape(key)}"
            if key in properties:
                problems.extend(validate(item, properties[key], where))
            elif extra is False:
                known = ", ".join(sorted(properties)) or "none"
                problems.append(SchemaViolation(where, f"is not a known field (known: {known})"))
            elif isinstance(extra, Mapping):
                problems.extend(validate(item, extra, where))
    return problems


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


def nullable(schema: Schema) -> dict[str, Any]:
    result = dict(schema)
    kind = result.get("type")
    if isinstance(kind, str):
        result["type"] = [kind, "null"]
    return result
