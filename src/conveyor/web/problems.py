"""Errors as `application/problem+json` (RFC 9457), one stable `type` per kind of error.

A `Problem` raised anywhere under an API handler becomes a response with that
status and body; anything else becomes a bare `internal-error` (logged here,
never sent: no stack trace ever leaves the server).
"""

from __future__ import annotations

from typing import Any

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:conveyor:problem:"

PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "The request is malformed"),
    "invalid-cursor": (400, "The pagination cursor is not valid"),
    "host-not-allowed": (400, "The Host header is not allowed"),
    "unauthorized": (401, "Authentication required"),
    "forbidden": (403, "Not allowed for this token"),
    "csrf-failed": (403, "The form's anti-forgery token is missing or wrong"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "conflict": (409, "The resource is not in a state that allows this"),
    "body-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "The request body must be application/json"),
    "validation-error": (422, "The request does not match the schema"),
    "unknown-task": (422, "No task is registered under this name"),
    "invalid-arguments": (422, "The arguments do not fit the task's signature"),
    "invalid-option": (422, "An enqueue option is out of range"),
    "rate-limited": (429, "Too many requests"),
    "internal-error": (500, "Internal error"),
    "backend-unavailable": (503, "The job database is unavailable"),
}
"""Every problem type the API can answer with: slug -> (status, title)."""


class Problem(Exception):
    """An API error: `slug` names the type, `detail` says what to do, `extra` adds members."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        if slug not in PROBLEMS:
            raise ValueError(f"unknown problem type {slug!r}")
        super().__init__(detail)
        self.slug = slug
        self.status, self.title = PROBLEMS[slug]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def to_json(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body
