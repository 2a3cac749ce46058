"""The API's route table: one `Endpoint` per operation, from which both the
Starlette routes and the OpenAPI document are built.

Every endpoint declares its permission, path and query parameters, request
body and responses as schemas (see `conveyor.web.schema`). The request
pipeline (`serve`) checks them in this order: host and authentication (401),
rate limit (429), permission (403), path parameters (404), query parameters
(422), body media type (415), size (413), JSON (400) and schema (422), then
runs the handler in a worker thread (backend calls block).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    InvalidArgumentsError,
    InvalidOptionError,
    OperationError,
    SchemaError,
    SerializationError,
    UnknownTaskError,
)
from conveyor.jsonvalue import storable_text, storable_value
from conveyor.web.auth import Permission, Principal
from conveyor.web.problems import PROBLEM_MEDIA_TYPE, PROBLEMS, TYPE_PREFIX, Problem
from conveyor.web.schema import Schema, SchemaViolation, normalize, validate
from conveyor.web.state import WebState

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.web")

API_PREFIX = "/api/v1"
MAX_DEPTH = 64
"""Deepest nesting of JSON accepted in a request body."""


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: Schema
    description: str
    required: bool = False
    invalid: tuple[str, str] | None = None
    """The problem (slug, detail) for a value that does not fit the schema, instead of
    a validation-error."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """What a handler receives: validated inputs, who is asking and from where."""

    state: WebState
    principal: Principal
    path: dict[str, Any]
    query: dict[str, Any]
    body: Any
    headers: Headers
    root_path: str = ""
    """Where the app is mounted ("" at the root)."""
    client: str = "unknown"
    """The client's address, as the server saw it (the audit log's `source`)."""

    @property
    def actor(self) -> str:
        """Who, as the audit log records it."""
        return actor_of(self.principal)


def actor_of(principal: Principal) -> str:
    """`token:<name>#<id> (<role>)`, or who is calling when authentication is off."""
    if principal.token_id is None:
        return f"web:{principal.name}"
    return f"token:{principal.name}#{principal.token_id} ({principal.role})"


def client_address(request: Request) -> str:
    return request.client.host if request.client and request.client.host else "unknown"


Handler = Callable[[ApiRequest], Reply]


@dataclass(frozen=True, slots=True)
class ApiEndpoint:
    method: str
    path: str
    """OpenAPI-style path below /api/v1, e.g. `/jobs/{job_id}`."""
    operation_id: str
    summary: str
    permission: Permission | None
    """None: public (no token needed)."""
    handler: Handler
    responses: Mapping[int, tuple[str, Schema | None]]
    params: Sequence[Param] = ()
    body: Schema | Callable[[Conveyor], Schema] | None = None
    """The request body's schema, or a function of the app that builds it (e.g. from
    the registered tasks)."""
    problems: Sequence[str] = ()
    description: str = ""
    tag: str = "jobs"
    probe: bool = False
    """A health probe: limited per address by its own, generous bucket (see WebState)."""
    explain: Callable[[Any, Conveyor], None] | None = None
    """Called with a body that does not fit `body`, to raise a more telling Problem
    than a validation-error (e.g. unknown-task) when it can."""
    links: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    """OpenAPI links of a response status: name -> Link object."""

    def body_schema(self, conveyor: Conveyor) -> Schema | None:
        return self.body(conveyor) if callable(self.body) else self.body


# -- request pipeline ------------------------------------------------------------------
def problem_response(problem: Problem, instance: str | None = None) -> Response:
    return JSONResponse(
        problem.to_json(instance), status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE, headers=problem.headers,
    )


def _depth_ok(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem("malformed-request", "Content-Length must be a number of bytes")
        if int(declared) > limit:
            raise Problem("body-too-large", f"request bodies are limited to {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem("body-too-large", f"request bodies are limited to {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Problem("malformed-request", f"the body is not valid JSON: {exc}") from None
    if not _depth_ok(value):
        raise Problem("malformed-request", f"the body nests deeper than {MAX_DEPTH} levels")
    return value


_INT = re.compile(r"^-?\d{1,19}$")
_NUMBER = re.compile(r"^-?\d{1,20}(\.\d{1,20})?([eE][-+]?\d{1,3})?$")


def _convert(raw: str, schema: Schema) -> Any:
    kind = schema.get("type")
    if kind == "integer" and _INT.match(raw):
        return int(raw)
    if kind == "integer" and _NUMBER.match(raw):
        number = Decimal(raw)  # JSON Schema's integers include 92.0 and 1e2
        return int(number) if number == number.to_integral_value() else raw
    if kind == "number" and _NUMBER.match(raw):
        return float(raw)
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


def parse_params(endpoint: ApiEndpoint, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    path: dict[str, Any] = {}
    for param in (p for p in endpoint.params if p.where == "path"):
        raw = request.path_params.get(param.name, "")
        converted = _convert(str(raw), param.schema)
        if validate(converted, param.schema) or not storable_text(str(raw)):
            raise Problem("not-found", f"no such {param.name.removesuffix('_id')}: {raw!r}")
        path[param.name] = converted
    query: dict[str, Any] = {}
    declared = {p.name: p for p in endpoint.params if p.where == "query"}
    errors = []
    for name in request.query_params:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            errors.append({"pointer": f"?{name}", "message": f"unknown parameter (known: {known})"})
    for name, param in declared.items():
        values = request.query_params.getlist(name)
        if not values:
            if param.required:
                errors.append({"pointer": f"?{name}", "message": "is required"})
            continue
        if any(not storable_text(v) for v in values):
            if param.invalid is not None:
                raise Problem(*param.invalid)
            errors.append({"pointer": f"?{name}", "message": "must be text without NUL"})
            continue
        value: Any
        if param.schema.get("type") == "array":
            value = [_convert(v, param.schema.get("items", {})) for v in values]
        elif len(values) > 1:
            errors.append({"pointer": f"?{name}", "message": "is given more than once"})
            continue
        else:
            value = _convert(values[0], param.schema)
        found = validate(value, param.schema, f"?{name}")
        if found and param.invalid is not None:
            raise Problem(*param.invalid)
        if found:
            errors.extend(v.to_json() for v in found)
            continue
        query[name] = normalize(value, param.schema)
    if errors:
        raise Problem("validation-error", "the query parameters do not fit", errors=errors)
    return path, query


def strings_storable(value: Any) -> bool:
    """True when every text in `value` (keys included) holds no NUL or lone surrogate."""
    return storable_value(value)


def validation_problem(found: Sequence[SchemaViolation], prefix: str = "") -> Problem:
    return Problem(
        "validation-error",
        "; ".join(f"{(prefix + v.pointer) or '/'} {v.message}" for v in found[:5]),
        errors=[{**v.to_json(), "pointer": (prefix + v.pointer) or "/"} for v in found[:50]],
    )


async def parse_body(
    endpoint: ApiEndpoint, request: Request, limit: int, conveyor: Conveyor
) -> Any:
    raw = await read_body(request, limit)
    schema = endpoint.body_schema(conveyor)
    if schema is None:
        if raw.strip():
            raise Problem("validation-error", "this operation takes no request body", errors=[])
        return None
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
    if not is_json:
        raise Problem(
            "unsupported-media-type",
            f"send the body as JSON with Content-Type: application/json (got {media or 'none'!r})",
        )
    value = parse_json(raw)
    found = validate(value, schema)
    if found:
        if endpoint.explain is not None:
            endpoint.explain(value, conveyor)
        raise validation_problem(found)
    if not strings_storable(_schema_strings(value, schema)):
        raise Problem("validation-error", "text fields must be UTF-8 without NUL", errors=[])
    return normalize(value, schema)


def _schema_strings(value: Any, schema: Schema) -> Any:
    """The parts of `value` that the schema types as strings (free-form args excluded)."""
    if isinstance(value, str) and schema.get("type") in ("string", ["string", "null"]):
        return value
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return [_schema_strings(v, props[k]) for k, v in value.items() if k in props]
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_schema_strings(v, schema["items"]) for v in value]
    return None


def problem_for(exc: Exception) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, UnknownTaskError):
        return Problem("unknown-task", str(exc))
    if isinstance(exc, InvalidArgumentsError | SerializationError):
        return Problem("invalid-arguments", str(exc))
    if isinstance(exc, InvalidOptionError):
        return Problem("invalid-option", str(exc))
    if isinstance(exc, OperationError):
        # the operations layer refused a value the schema let through (a control
        # character in a queue name, say): the caller's to fix, never a 500
        return Problem("validation-error", str(exc))
    if isinstance(exc, SchemaError):
        log.error("web: %s", exc)
        return Problem("backend-unavailable", "the job database's schema is not current: "
                       "run `conveyor migrate`", headers={"Retry-After": "30"})
    if isinstance(exc, BackendUnavailable | BackendError):
        log.error("web: %s", exc)
        return Problem("backend-unavailable", "the job database did not answer; try again",
                       headers={"Retry-After": "5"})
    log.exception("web: unexpected error", exc_info=exc)
    return Problem("internal-error", "an unexpected error happened; it has been logged")


def serve(endpoint: ApiEndpoint) -> Callable[[Request], Any]:
    async def route(request: Request) -> Response:
        state: WebState = request.app.state.conveyor_web
        instance = request.url.path
        try:
            principal = await state.authenticate(request, endpoint.permission,
                                                 probe=endpoint.probe)
            path, query = parse_params(endpoint, request)
            body = await parse_body(endpoint, request, state.settings.max_body_bytes,
                                    state.conveyor)
            call = ApiRequest(state, principal, path, query, body, request.headers,
                              request.scope.get("root_path", ""), client_address(request))
            reply = await run_in_threadpool(endpoint.handler, call)
        except Exception as exc:
            return problem_response(problem_for(exc), instance)
        if reply.status == 204:
            return Response(status_code=204, headers=dict(reply.headers))
        return JSONResponse(reply.body, status_code=reply.status, headers=dict(reply.headers))

    route.__name__ = endpoint.operation_id
    return route


# -- cursors ---------------------------------------------------------------------------
# A cursor is "v1:<id>" in URL-safe base64 without padding. Three ASCII digits encode as
# four characters, so the exact set of cursors is a regular language: "v1:" is "djE6",
# then groups for three digits, and a tail of one or two digits.
_THREE = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]"
_ONE = "(?:[MN][AQgw]|O[AQ])"
_TWO = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]"
CURSOR_PATTERN = (
    f"^djE6(?:(?:{_THREE}){{1,6}}|(?:{_THREE}){{0,6}}{_ONE}|(?:{_THREE}){{0,5}}{_TWO})$"
)
"""Exactly the cursors the API accepts: "v1:" and 1 to 19 digits, base64url-encoded."""
_CURSOR = re.compile(CURSOR_PATTERN[:-1] + r"\Z")
_MAX_ID = 2**63 - 1
INVALID_CURSOR = ("invalid-cursor", "pass back the next_cursor of a previous page unchanged")


def encode_cursor(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{before_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor names (a page holds the jobs below it); capped at the largest id."""
    if not _CURSOR.match(cursor):
        raise Problem(*INVALID_CURSOR)
    text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    return min(int(text.removeprefix("v1:")), _MAX_ID)


# -- the OpenAPI document ----------------------------------------------------------------
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "enum": [TYPE_PREFIX + slug for slug in PROBLEMS]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def problem_slugs(endpoint: ApiEndpoint) -> list[str]:
    """Every problem type this endpoint may answer with."""
    slugs = ["internal-error", "backend-unavailable", "rate-limited", "host-not-allowed",
             "method-not-allowed", "body-too-large", "malformed-request", "validation-error"]
    if endpoint.permission is not None:
        slugs += ["unauthorized", "forbidden"]
    if any(p.where == "path" for p in endpoint.params):
        slugs.append("not-found")
    if endpoint.body is not None:
        slugs.append("unsupported-media-type")
    slugs += list(endpoint.problems)
    return sorted(set(slugs))


_COMPONENT_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _hoist(schema: Any, components: dict[str, Any]) -> Any:
    """`schema` with each branch of a discriminated `oneOf` moved to `components` and
    named in the discriminator's mapping (OpenAPI maps discriminator values to named
    schemas only). The branches keep their `title` (the value) and a `const` on the
    discriminating property."""
    if isinstance(schema, list):
        return [_hoist(item, components) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    result = {key: _hoist(value, components) for key, value in schema.items()}
    discriminator = result.get("discriminator")
    if isinstance(discriminator, Mapping) and isinstance(result.get("oneOf"), list):
        prop = discriminator["propertyName"]
        mapping: dict[str, str] = {}
        branches = []
        for branch in result["oneOf"]:
            value = branch.get("properties", {}).get(prop, {}).get("const") if isinstance(
                branch, Mapping) else None
            if not isinstance(value, str):
                branches.append(branch)
                continue
            base = name = "Enqueue_" + _COMPONENT_NAME.sub("_", value)
            n = 1
            while name in components and components[name] != branch:
                n += 1
                name = f"{base}_{n}"
            components[name] = branch
            mapping[value] = f"#/components/schemas/{name}"
            branches.append({"$ref": mapping[value]})
        result["oneOf"] = branches
        result["discriminator"] = {**discriminator, "mapping": mapping}
    return result


def openapi_document(
    endpoints: Sequence[ApiEndpoint], version: str, conveyor: Conveyor
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `endpoints` as served for `conveyor` (whose registered
    tasks shape the enqueue schemas)."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for ep in endpoints:
        operation: dict[str, Any] = {
            "operationId": ep.operation_id,
            "summary": ep.summary,
            "tags": [ep.tag],
            "x-conveyor-permission": ep.permission.value if ep.permission else "public",
            "parameters": [
                {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                 "description": p.description, "schema": dict(p.schema)}
                for p in ep.params
            ],
            "responses": {},
        }
        if ep.description:
            operation["description"] = ep.description
        if ep.permission is None:
            operation["security"] = []
        body = ep.body_schema(conveyor)
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _hoist(body, schemas)}},
            }
        for status, (text, schema) in ep.responses.items():
            response: dict[str, Any] = {"description": text}
            if schema is not None:
                response["content"] = {"application/json": {"schema": dict(schema)}}
            if status in ep.links:
                response["links"] = {name: dict(link) for name, link in ep.links[status].items()}
            operation["responses"][str(status)] = response
        statuses: dict[int, list[str]] = {}
        for slug in problem_slugs(ep):
            statuses.setdefault(PROBLEMS[slug][0], []).append(slug)
        for status, slugs in sorted(statuses.items()):
            operation["responses"][str(status)] = {
                "description": "Problem: " + ", ".join(slugs),
                "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
            }
        paths.setdefault(API_PREFIX + ep.path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "conveyor HTTP API",
            "version": version,
            "description": "Enqueue jobs and operate conveyor over HTTP. Errors are "
                           "application/problem+json (RFC 9457).",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer",
                          "description": "A token from `conveyor tokens create`."},
            },
        },
        "security": [{"token": []}],
    }
