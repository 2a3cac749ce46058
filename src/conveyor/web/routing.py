"""The API's route table: one `ApiEndpoint` per operation, from which both the
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
from typing import Any, Literal

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
from conveyor.web.schema import Schema, validate
from conveyor.web.state import WebState

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
    invalid: str | None = None
    """The problem type answered when the value does not fit (default: validation-error)."""


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
    body: Schema | None = None
    problems: Sequence[str] = ()
    description: str = ""
    tag: str = "jobs"
    probe: bool = False
    """A health probe: limited per address by its own, generous bucket (see WebState)."""


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
    errors: list[dict[str, Any]] = []
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
        if found:
            errors.extend(v.to_json() for v in found)
            continue
        query[name] = value
    for error in errors:
        culprit = declared.get(str(error["pointer"]).removeprefix("?"))
        if culprit is not None and culprit.invalid is not None:
            raise Problem(culprit.invalid, PROBLEMS[culprit.invalid][1] + f": ?{culprit.name} "
                          f"{error['message']}")
    if errors:
        raise Problem("validation-error", "the query parameters do not fit", errors=errors)
    return path, query


async def parse_body(endpoint: ApiEndpoint, request: Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    if endpoint.body is None:
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
    found = validate(value, endpoint.body)
    if found:
        raise Problem(
            "validation-error", "; ".join(f"{v.pointer or '/'} {v.message}" for v in found[:5]),
            errors=[v.to_json() for v in found[:50]],
        )
    if not storable_value(_schema_strings(value, endpoint.body)):
        raise Problem("validation-error", "text fields must be UTF-8 without NUL", errors=[])
    return value


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
    if isinstance(exc, InvalidOptionError | OperationError):
        return Problem("invalid-option", str(exc))
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
            body = await parse_body(endpoint, request, state.settings.max_body_bytes)
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
def encode_cursor(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{before_id}".encode()).decode().rstrip("=")


_CURSOR = re.compile(r"v1:([1-9][0-9]{0,18})")
_CURSOR_MAX_ID = 2**63 - 1
CURSOR_MAX_LENGTH = 64


def decode_cursor(cursor: str) -> int:
    """The job id a cursor names; any other text (forged, truncated, huge, not ASCII) is a
    400 `invalid-cursor`, never an error of the database."""
    number = None
    if 0 < len(cursor) <= CURSOR_MAX_LENGTH and cursor.isascii():
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            text = ""
        found = _CURSOR.fullmatch(text)
        if found is not None and int(found[1]) <= _CURSOR_MAX_ID:
            number = int(found[1])
    if number is None:
        raise Problem("invalid-cursor", "pass back the next_cursor of a previous page unchanged")
    return number


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


def openapi_document(endpoints: Sequence[ApiEndpoint], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
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
        if ep.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": dict(ep.body)}},
            }
        for status, (text, schema) in ep.responses.items():
            response: dict[str, Any] = {"description": text}
            if schema is not None:
                response["content"] = {"application/json": {"schema": dict(schema)}}
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
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer",
                          "description": "A token from `conveyor tokens create`."},
            },
        },
        "security": [{"token": []}],
    }
