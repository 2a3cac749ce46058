"""The dashboard: server-rendered pages, our own small stylesheet and one small script.

Every page is complete without script. `static/live.js` (served from this package,
allowed by a `script-src 'self'` policy: no inline script, nothing from elsewhere)
keeps a page live: every few seconds it fetches the same URL and swaps in the
elements marked `data-live`, so numbers, charts and states change without a reload.

Reading needs the `read` permission, every action (`retry`, `cancel`, `purge`,
`pause`) needs `operate`. With authentication on, the browser signs in with
an API token once and gets a server-side session: the cookie holds a random
session id (HttpOnly, SameSite=Strict, Secure over https), never the token;
the server stores only its SHA-256, enforces its 12 hours, and ends it on
sign-out or when its token is revoked or expires. The API refuses a session
id as a Bearer token. Every form that changes something carries an anti-forgery token that
must match a second cookie (double submit), and a cross-site Origin is
refused. Bulk actions go through a confirmation page that says how many jobs
they will touch.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from conveyor.backends.base import AuditFilter, JobFilter, StatsQuery
from conveyor.clock import format_duration
from conveyor.insights import worker_json
from conveyor.jsonvalue import storable_text
from conveyor.operations import Operations, steps_json
from conveyor.types import JobState
from conveyor.web.auth import (
    ANONYMOUS,
    SESSION_SECONDS,
    Permission,
    Principal,
    end_session,
    start_session,
)
from conveyor.web.console import WINDOWS, charts, key_rows, read_series, window_seconds
from conveyor.web.graph import layout
from conveyor.web.problems import Problem
from conveyor.web.routing import (
    actor_of,
    client_address,
    decode_cursor,
    encode_cursor,
    problem_for,
    read_body,
)
from conveyor.web.schema import parse_datetime
from conveyor.web.views import (
    alive_window,
    attempt_history,
    audit_json,
    dead_groups,
    group_job_ids,
    job_json,
    last_error_of,
    queue_views,
    slo_rows,
    sparkline,
)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
SESSION_COOKIE = "conveyor_session"
LEGACY_TOKEN_COOKIE = "conveyor_token"  # noqa: S105 - a cookie name: held the token itself
CSRF_COOKIE = "conveyor_csrf"
PAGE = 50
FORM_LIMIT = 16_384
PAST = {"retry": "retried", "cancel": "cancelled"}
LIVE_EVERY = 2.0
"""Seconds between a live page's updates (`?live=N` for another period, `?live=0` for none)."""
STILL_PAGES = frozenset({"login.html", "confirm.html", "error.html"})
"""Pages that are never live (nothing on them changes by itself)."""
OPTIONS_LIMIT = 500
"""Most queues and tasks offered in a filter's select."""

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _short_time(value: str | None) -> str:
    if not value:
        return "-"
    return value.replace("T", " ").replace("Z", "")[:19]


def _epoch_time(value: float | None) -> str:
    if value is None:
        return "-"
    return _short_time(datetime.fromtimestamp(value, tz=UTC).isoformat())


_env.filters["duration"] = format_duration
_env.filters["epoch_time"] = _epoch_time
_env.filters["short_time"] = _short_time


class Unauthenticated(Exception):
    """The browser must sign in first."""


# -- request helpers ---------------------------------------------------------------------
def _state(request: Request) -> Any:
    return request.app.state.conveyor_web


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def _principal(request: Request, permission: Permission) -> Principal:
    state = _state(request)
    if not state.settings.auth:
        return ANONYMOUS
    principal: Principal | None = await state.principal_for_session(
        request.cookies.get(SESSION_COOKIE)
    )
    if principal is None:
        raise Unauthenticated
    state.limit(f"token:{principal.token_id}")
    if not principal.may(permission):
        raise Problem("forbidden", f"a {principal.role} token may not do this "
                      f"(needs the {permission.value} permission)")
    return principal


def _csrf_token(request: Request) -> tuple[str, bool]:
    """The browser's anti-forgery token, and whether it must be set as a cookie now."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    if len(existing) == 43 and existing.replace("-", "").replace("_", "").isalnum():
        return existing, False
    return secrets.token_urlsafe(32), True


def _set_cookie(response: Response, request: Request, name: str, value: str,
                max_age: int | None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=_root(request) or "/", httponly=True,
        samesite="strict", secure=_secure(request),
    )


def _error_page(request: Request, exc: Exception) -> Response:
    """The error page for what went wrong, with the problem's headers (Retry-After...)."""
    problem = problem_for(exc)
    response = _render(request, "error.html", status=problem.status, title=problem.title,
                       detail=problem.detail)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def _live_every(request: Request) -> float:
    raw = request.query_params.get("live", "")
    try:
        value = float(raw) if raw else LIVE_EVERY
    except ValueError:
        return LIVE_EVERY
    return 0.0 if not value > 0 else max(0.5, min(value, 600.0))


def _render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    token, fresh = _csrf_token(request)
    state = _state(request)
    live = status == 200 and template not in STILL_PAGES
    context.setdefault("live_every", _live_every(request) if live else 0.0)
    html = _env.get_template(template).render(
        root=_root(request), csrf=token, auth=state.settings.auth,
        principal=context.pop("principal", None), request_path=request.url.path,
        query=dict(request.query_params), **context,
    )
    response = HTMLResponse(html, status_code=status)
    if fresh:
        _set_cookie(response, request, CSRF_COOKIE, token, None)
    return response


async def _form(request: Request) -> dict[str, str]:
    """A url-encoded form whose anti-forgery token matches the cookie, from our own origin."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise Problem("csrf-failed", f"a form from {origin} may not act on this dashboard")
    elif origin == "null":
        raise Problem("csrf-failed", "a form from an opaque origin may not act here")
    raw = await read_body(request, FORM_LIMIT)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem("malformed-request", "the form is not UTF-8") from None
    fields = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = fields.get("csrf", "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Problem("csrf-failed", "reload the page and try again (the form's anti-forgery "
                      "token did not match)")
    return fields


def _redirect(request: Request, path: str, **params: str) -> Response:
    target = _root(request) + path
    if params:
        target += "?" + urlencode(params)
    return RedirectResponse(target, status_code=303)


PageHandler = Callable[[Request, Principal], Awaitable[Response]]
PageRoute = Callable[[Request], Awaitable[Response]]


def page(permission: Permission) -> Callable[[PageHandler], PageRoute]:
    """Wrap a page handler: authentication, problems as HTML pages."""

    def wrap(handler: PageHandler) -> PageRoute:
        async def route(request: Request) -> Response:
            try:
                principal = await _principal(request, permission)
                return await handler(request, principal)
            except Unauthenticated:
                if request.method == "GET":
                    return _redirect(request, "/login", next=request.url.path)
                return _redirect(request, "/login")
            except Exception as exc:  # the database is down, or a bug: a page, not a trace
                return _error_page(request, exc)

        route.__name__ = handler.__name__
        return route

    return wrap


async def error_page(request: Request, status: int) -> Response:
    title = "Not found" if status == 404 else "Method not allowed" if status == 405 else "Error"
    return _render(request, "error.html", status=status, title=title,
                   detail="There is nothing here.")


# -- sign in -------------------------------------------------------------------------------
def _safe_next(request: Request, value: str | None) -> str:
    """Only a path on this dashboard (no scheme, no host) is followed after sign-in."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return _root(request) + "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return _root(request) + "/"
    return value


async def login(request: Request) -> Response:
    state = _state(request)
    if request.method == "GET":
        return _render(request, "login.html", next=request.query_params.get("next", ""),
                       failed=False)
    try:
        fields = await _form(request)
        state.limit(state.client_key(request))
        token = fields.get("token", "").strip()
        principal = await state.principal_for_token(token)
    except Exception as exc:
        return _error_page(request, exc)
    if principal is None or not principal.may(Permission.READ):
        return _render(request, "login.html", status=401, next=fields.get("next", ""),
                       failed=True)
    try:
        session_id = await run_in_threadpool(start_session, state.conveyor.backend, principal)
    except Exception as exc:
        return _error_page(request, exc)
    response = RedirectResponse(_safe_next(request, fields.get("next")), status_code=303)
    _set_cookie(response, request, SESSION_COOKIE, session_id, SESSION_SECONDS)
    if LEGACY_TOKEN_COOKIE in request.cookies:  # from before server-side sessions
        response.delete_cookie(LEGACY_TOKEN_COOKIE, path=_root(request) or "/")
    return response


async def logout(request: Request) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    try:
        await _form(request)
        if session_id:
            state = _state(request)
            await run_in_threadpool(end_session, state.conveyor.backend, session_id)
    except Exception as exc:  # not signed out on the server: say so, keep the cookie
        return _error_page(request, exc)
    response = _redirect(request, "/login")
    response.delete_cookie(SESSION_COOKIE, path=_root(request) or "/")
    return response


# -- pages -----------------------------------------------------------------------------------
@page(Permission.READ)
async def overview(request: Request, principal: Principal) -> Response:
    state = _state(request)
    backend = state.conveyor.backend

    def read() -> dict[str, Any]:
        views = queue_views(backend, state.conveyor.lease)
        workers = backend.worker_list(alive_window(state.conveyor.lease))
        dead = sum(v.counts.get("dead", 0) for v in views)
        now = backend.now()
        spools = [{**asdict(h), "age": None if h.oldest_spooled_at is None or not h.depth
                   else max(0.0, h.reported_at - h.oldest_spooled_at),
                   "since_report": max(0.0, now - h.reported_at)}
                  for h in backend.spool_hosts()]
        return {"queues": [(v, sparkline(v.throughput)) for v in views],
                "workers_alive": len(workers), "dead_total": dead,
                "slos": slo_rows(state.conveyor), "spools": spools}

    data = await run_in_threadpool(read)
    return _render(request, "overview.html", principal=principal, nav="overview",
                   states=[str(s) for s in JobState], **data)


def _jobs_filter(request: Request) -> tuple[JobFilter, dict[str, str], list[str]]:
    q = request.query_params
    problems: list[str] = []
    kept: dict[str, str] = {}
    states: list[JobState] = []
    for value in q.getlist("state"):
        if value in set(JobState):
            states.append(JobState(value))
            kept.setdefault("state", value)
        elif value:
            problems.append(f"unknown state {value!r}")

    def text(name: str) -> str | None:
        value = q.get(name, "").strip()
        if not value:
            return None
        if len(value) > 255 or "\x00" in value:
            problems.append(f"{name} is too long or holds NUL")
            return None
        kept[name] = value
        return value

    def when(name: str) -> float | None:
        value = q.get(name, "").strip()
        if not value:
            return None
        parsed = parse_datetime(value) or parse_datetime(value + "Z")
        if parsed is None:
            problems.append(f"{name} is not a date and time (e.g. 2030-01-02T03:04)")
            return None
        kept[name] = value
        return parsed.timestamp()

    before = decode_cursor(q["cursor"]) if "cursor" in q else None
    found = JobFilter(
        states=states, queue=text("queue"), task=text("task"), error_text=text("error"),
        created_after=when("created_after"), created_before=when("created_before"),
        before_id=before, limit=PAGE + 1,
    )
    return found, kept, problems


def _filter_options(conveyor: Any, kept: dict[str, str]) -> tuple[list[str], list[str]]:
    """The queues and tasks a filter's selects offer: those with jobs, those that
    finished attempts in the last hour, the app's registered tasks and their queues,
    and whatever the filter names now (cheap reads: a live page repeats them)."""
    backend = conveyor.backend
    now = backend.now()
    queues = {s.queue for s in backend.queue_stats()}
    queues |= {p.queue for p in backend.queue_pause_list()}
    tasks = set(conveyor.tasks)
    queues |= {t.options.queue or conveyor.default_queue for t in conveyor.tasks.values()}
    for row in backend.stats_read(StatsQuery(since=now - 3600.0, until=now + 60.0)):
        queues.add(row.queue)
        tasks.add(row.task)
    for name in ("queue", "task"):
        if kept.get(name):
            (queues if name == "queue" else tasks).add(kept[name])
    return sorted(queues)[:OPTIONS_LIMIT], sorted(tasks)[:OPTIONS_LIMIT]


def _timing(record: Any, now: float) -> dict[str, Any]:
    """A job list row's duration (of its last attempt; so far, while running) and finish."""
    started, finished = record.started_at, record.finished_at
    duration = None
    if started is not None and finished is not None and finished >= started:
        duration = (finished - started).total_seconds()
    elif started is not None and record.state is JobState.RUNNING:
        duration = max(0.0, now - started.timestamp())
    return {"duration": duration, "running": record.state is JobState.RUNNING}


@page(Permission.READ)
async def jobs(request: Request, principal: Principal) -> Response:
    state = _state(request)
    found, kept, problems = _jobs_filter(request)

    def read() -> tuple[list[Any], float, list[str], list[str]]:
        records = state.conveyor.operations.list_jobs(found)
        queues, tasks = _filter_options(state.conveyor, kept)
        return records, state.conveyor.backend.now(), queues, tasks

    records, now, queue_options, task_options = await run_in_threadpool(read)
    page_records = records[:PAGE]
    next_query = None
    if len(records) > PAGE and page_records:
        next_query = urlencode({**kept, "cursor": encode_cursor(page_records[-1].id)})
    rows = [
        {"job": job_json(r), "last_error": last_error_of(r) if r.errors else None,
         **_timing(r, now)}
        for r in page_records
    ]
    return _render(request, "jobs.html", principal=principal, nav="jobs", rows=rows,
                   filters=kept, problems=problems, next_query=next_query,
                   states=[str(s) for s in JobState], queue_options=queue_options,
                   task_options=task_options)


def _job_id(request: Request) -> int:
    raw = request.path_params["job_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise Problem("not-found", f"no job {raw!r}")
    return int(raw)


@page(Permission.READ)
async def job_detail(request: Request, principal: Principal) -> Response:
    state = _state(request)
    job_id = _job_id(request)
    backend = state.conveyor.backend

    def read() -> tuple[Any, list[Any], float]:
        found = backend.job_get(job_id)
        return found, backend.job_retries(job_id) if found is not None else [], backend.now()

    record, retries, now = await run_in_threadpool(read)
    if record is None:
        raise Problem("not-found", f"no job {job_id} (never enqueued, or pruned)")
    context, found = await run_in_threadpool(state.conveyor.operations.job_steps, job_id)
    waiting_for = await run_in_threadpool(state.conveyor.operations.why_waiting, record)
    shown = job_json(record)
    return _render(request, "job.html", principal=principal, nav="jobs", job=shown,
                   history=attempt_history(shown["errors"], retries),
                   timing=_timing(record, now),
                   steps=steps_json(context, found), waiting_for=waiting_for,
                   may_operate=principal.may(Permission.OPERATE),
                   done=request.query_params.get("done"))


@page(Permission.OPERATE)
async def job_action(request: Request, principal: Principal) -> Response:
    await _form(request)
    state = _state(request)
    job_id = _job_id(request)
    action = request.path_params["action"]
    ops = state.conveyor.operations
    who = {"actor": actor_of(principal), "source": client_address(request)}
    if action == "retry":
        changed = await run_in_threadpool(
            lambda: ops.retry(JobFilter(ids=[job_id], limit=1), **who)
        )
    elif action == "cancel":
        before = await run_in_threadpool(ops.get_job, job_id)
        changed = await run_in_threadpool(lambda: ops.cancel(job_id, **who))
        if changed and before is not None and before.state is JobState.RUNNING:
            return _redirect(request, f"/jobs/{job_id}", done="asked to stop (cancel requested)")
    else:
        raise Problem("not-found", f"no action {action!r}")
    if not changed:
        raise Problem("conflict", f"job {job_id} cannot be {PAST[action]} in its current "
                      "state (it changed meanwhile?)")
    return _redirect(request, f"/jobs/{job_id}", done=PAST[action])


@page(Permission.READ)
async def workflows(request: Request, principal: Principal) -> Response:
    ops = _state(request).conveyor.operations
    found = await run_in_threadpool(ops.list_workflows, 100)
    return _render(request, "workflows.html", principal=principal, nav="workflows",
                   workflows=found)


@page(Permission.READ)
async def workflow_detail(request: Request, principal: Principal) -> Response:
    ops = _state(request).conveyor.operations
    workflow_id = request.path_params["workflow_id"]
    if not re.fullmatch(r"[0-9a-f]{32}", workflow_id):
        raise Problem("not-found", f"no workflow {workflow_id!r}")
    view = await run_in_threadpool(ops.get_workflow, workflow_id)
    if view is None:
        raise Problem("not-found", f"no workflow {workflow_id}")
    return _render(request, "workflow.html", principal=principal, nav="workflows",
                   workflow=view.to_json(), graph=layout(view),
                   may_operate=principal.may(Permission.OPERATE),
                   done=request.query_params.get("done"))


@page(Permission.OPERATE)
async def workflow_cancel(request: Request, principal: Principal) -> Response:
    await _form(request)
    ops = _state(request).conveyor.operations
    workflow_id = request.path_params["workflow_id"]
    who = {"actor": actor_of(principal), "source": client_address(request)}
    count = await run_in_threadpool(lambda: ops.cancel_workflow(workflow_id, **who))
    if count is None:
        raise Problem("not-found", f"no workflow {workflow_id!r}")
    return _redirect(request, f"/workflows/{workflow_id}", done=f"cancelled {count} node(s)")


@page(Permission.READ)
async def dlq(request: Request, principal: Principal) -> Response:
    state = _state(request)
    groups, truncated = await run_in_threadpool(dead_groups, state.conveyor.backend)
    return _render(request, "dlq.html", principal=principal, nav="dlq",
                   groups=[g.to_json() for g in groups], truncated=truncated,
                   may_operate=principal.may(Permission.OPERATE),
                   done=request.query_params.get("done"))


@page(Permission.OPERATE)
async def dlq_confirm(request: Request, principal: Principal) -> Response:
    action = request.query_params.get("action", "")
    fingerprint = request.query_params.get("fingerprint", "")
    if action not in ("retry", "purge"):
        raise Problem("not-found", "choose retry or purge")
    state = _state(request)
    groups, _ = await run_in_threadpool(dead_groups, state.conveyor.backend)
    group = next((g for g in groups if g.fingerprint == fingerprint), None)
    if group is None:
        raise Problem("not-found", "that group of dead jobs no longer exists")
    return _render(request, "confirm.html", principal=principal, nav="dlq", action=action,
                   group=group.to_json())


@page(Permission.OPERATE)
async def dlq_action(request: Request, principal: Principal) -> Response:
    fields = await _form(request)
    action = request.path_params["action"]
    if action not in ("retry", "purge"):
        raise Problem("not-found", "choose retry or purge")
    if fields.get("confirm") != "yes":
        raise Problem("conflict", "confirm the action on the confirmation page")
    state = _state(request)
    ops: Operations = state.conveyor.operations
    fingerprint = fields.get("fingerprint", "")
    actor, source = actor_of(principal), client_address(request)

    def act() -> int:
        ids = group_job_ids(state.conveyor.backend, fingerprint, task=None, queue=None)
        if not ids:
            return 0
        found = JobFilter(states=[JobState.DEAD], ids=ids, limit=len(ids))
        if action == "retry":
            return ops.retry(found, actor=actor, source=source)
        return ops.purge(found, actor=actor, source=source)

    count = await run_in_threadpool(act)
    done = f"{'retried' if action == 'retry' else 'purged'} {count} job(s)"
    return _redirect(request, "/dlq", done=done)


@page(Permission.READ)
async def workers(request: Request, principal: Principal) -> Response:
    state = _state(request)
    backend = state.conveyor.backend

    def read() -> dict[str, Any]:
        now = backend.now()
        alive = backend.worker_list(alive_window(state.conveyor.lease))
        return {"workers": [worker_json(w, now) for w in alive],
                "queues": queue_views(backend, state.conveyor.lease)}

    data = await run_in_threadpool(read)
    return _render(request, "workers.html", principal=principal, nav="workers",
                   may_operate=principal.may(Permission.OPERATE), **data)


@page(Permission.OPERATE)
async def queue_action(request: Request, principal: Principal) -> Response:
    await _form(request)
    state = _state(request)
    queue = request.path_params["queue"]
    if not (1 <= len(queue) <= 255) or "\x00" in queue:
        raise Problem("not-found", "no such queue")
    ops = state.conveyor.operations
    who = {"actor": actor_of(principal), "source": client_address(request)}
    if request.path_params["action"] == "pause":
        await run_in_threadpool(lambda: ops.pause_queue(queue, **who))
    elif request.path_params["action"] == "resume":
        await run_in_threadpool(lambda: ops.resume_queue(queue, **who))
    else:
        raise Problem("not-found", "choose pause or resume")
    return _redirect(request, "/workers")


@page(Permission.ADMIN)
async def audit(request: Request, principal: Principal) -> Response:
    state = _state(request)
    q = request.query_params
    problems: list[str] = []
    kept: dict[str, str] = {}
    for name, limit in (("actor", 255), ("action", 100)):
        value = q.get(name, "").strip()
        if value and (len(value) > limit or not storable_text(value)):
            problems.append(f"{name} is too long or holds NUL")
        elif value:
            kept[name] = value
    actor, action = kept.get("actor"), kept.get("action")
    before = None
    if q.get("cursor"):
        try:
            before = decode_cursor(q["cursor"])
        except Problem:
            problems.append("the page cursor is not valid; showing the first page")
    found = AuditFilter(actor=actor, action=action, before_id=before, limit=PAGE + 1)
    entries = await run_in_threadpool(state.conveyor.operations.audit, found)
    shown = entries[:PAGE]
    next_query = None
    if len(entries) > PAGE and shown:
        next_query = urlencode({**kept, "cursor": encode_cursor(shown[-1].id)})
    rows = [{**audit_json(e), "params_text": json.dumps(e.params, sort_keys=True)}
            for e in shown]
    return _render(request, "audit.html", principal=principal, nav="audit", rows=rows,
                   filters=kept, problems=problems, next_query=next_query)


def _top_errors(backend: Any, series: Any, kept: dict[str, str]) -> list[tuple[str, int]]:
    """The window's most frequent error types, for the task chosen, or for the tasks of
    the queue chosen that finished attempts in the window (the error counts are kept
    per task)."""
    if kept.get("task") or not kept.get("queue"):
        found: list[tuple[str, int]] = backend.stats_error_types(
            series.since, task=kept.get("task"), limit=5)
        return found
    merged: dict[str, int] = {}
    for task in sorted({t for _, t, b in series.by_key if b.retried or b.dead})[:20]:
        for name, count in backend.stats_error_types(series.since, task=task, limit=5):
            merged[name] = merged.get(name, 0) + count
    return sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:5]


@page(Permission.READ)
async def charts_page(request: Request, principal: Principal) -> Response:
    state = _state(request)
    q = request.query_params
    problems: list[str] = []
    kept: dict[str, str] = {}
    try:
        window, seconds = window_seconds(q.get("window") or None)
    except Problem as problem:
        problems.append(problem.detail)
        window, seconds = window_seconds(None)
    for name in ("queue", "task"):
        value = q.get(name, "").strip()
        if value and (len(value) > 255 or not storable_text(value)):
            problems.append(f"{name} is too long or holds NUL")
        elif value:
            kept[name] = value
    backend = state.conveyor.backend

    def read() -> dict[str, Any]:
        now = backend.now()
        series = read_series(backend, now, window, seconds, queue=kept.get("queue"),
                             task=kept.get("task"))
        queues, tasks = _filter_options(state.conveyor, kept)
        errors = _top_errors(backend, series, kept)
        return {"series": series, "charts": charts(series), "keys": key_rows(series),
                "top_errors": errors, "queue_options": queues, "task_options": tasks}

    data = await run_in_threadpool(read)
    # A long window changes slowly (its bars are many minutes wide): poll it less often.
    live = _live_every(request) if "live" in q else max(LIVE_EVERY, min(seconds / 360, 600.0))
    return _render(request, "charts.html", principal=principal, nav="charts", window=window,
                   live_every=live,
                   windows=list(WINDOWS), filters=kept, problems=problems, **data)


async def favicon(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                        headers={"cache-control": "public, max-age=86400"})


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route("/", overview, methods=["GET"], name="overview"),
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/jobs", jobs, methods=["GET"], name="jobs"),
        Route("/jobs/{job_id}", job_detail, methods=["GET"], name="job"),
        Route("/jobs/{job_id}/{action}", job_action, methods=["POST"], name="job_action"),
        Route("/workflows", workflows, methods=["GET"], name="workflows"),
        Route("/workflows/{workflow_id}", workflow_detail, methods=["GET"], name="workflow"),
        Route("/workflows/{workflow_id}/cancel", workflow_cancel, methods=["POST"],
              name="workflow_cancel"),
        Route("/dlq", dlq, methods=["GET"], name="dlq"),
        Route("/dlq/confirm", dlq_confirm, methods=["GET"], name="dlq_confirm"),
        Route("/dlq/{action}", dlq_action, methods=["POST"], name="dlq_action"),
        Route("/workers", workers, methods=["GET"], name="workers"),
        Route("/queues/{queue}/{action}", queue_action, methods=["POST"], name="queue_action"),
        Route("/audit", audit, methods=["GET"], name="audit"),
        Route("/charts", charts_page, methods=["GET"], name="charts"),
        Route("/favicon.ico", favicon, methods=["GET"], name="favicon"),
    ]
