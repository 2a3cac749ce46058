"""The HTTP API's operations (under /api/v1): handlers and their declared schemas."""

from __future__ import annotations

from typing import Any

from conveyor.app import Conveyor
from conveyor.backends.base import ROLES, AuditFilter, JobFilter
from conveyor.errors import NotWaitingError, OperationError
from conveyor.insights import worker_json
from conveyor.middleware import EnqueueJob
from conveyor.operations import Operations, limit_json, steps_json
from conveyor.task import Task
from conveyor.types import JobState
from conveyor.web.arguments import check_arguments
from conveyor.web.auth import Permission
from conveyor.web.problems import Problem
from conveyor.web.routing import (
    CURSOR_PATTERN,
    INVALID_CURSOR,
    ApiEndpoint,
    ApiRequest,
    Param,
    Reply,
    decode_cursor,
    encode_cursor,
    strings_storable,
    validation_problem,
)
from conveyor.web.schema import (
    ANY_JSON,
    NO_NUL,
    call_schemas,
    normalize,
    nullable,
    obj,
    parse_datetime,
    text,
    validate,
)
from conveyor.web.views import (
    audit_json,
    dead_groups,
    group_job_ids,
    job_json,
    queue_views,
    slo_rows,
)

BULK_MAX = 1000
LIST_MAX = 500

# -- schemas ---------------------------------------------------------------------------
TEXT = text()
NAME = text(pattern=r"^[^\s\u0000](?:[^\u0000]*[^\s\u0000])?$",
            message="must be text without NUL or surrounding blanks")
"""A queue's name: no blanks around it (the app refuses " mail")."""
TIME = {"type": "string", "format": "date-time"}
RUN_AT_PATTERN = r"^(?!0001-01-0[12]|9999-12-(30|31)|0000)"
"""A run_at the server accepts starts after 0001-01-02 and before 9999-12-30 (an offset
can move either end by a day, so the document leaves both days out)."""
STATES = [str(s) for s in JobState]
JOB_ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}

OPTIONS = obj({
    "queue": {**NAME, "description": "Queue name (default: the task's, then the app's)."},
    "priority": {"type": "integer", "minimum": 0, "maximum": 9,
                 "description": "0 is the most urgent."},
    "delay": {"type": "number", "minimum": 0, "maximum": 10 * 365 * 86400,
              "description": "Seconds to wait before the job may run."},
    "run_at": {**TIME, "pattern": RUN_AT_PATTERN,
               "description": "Earliest start (instead of delay), from 0001-01-02 to "
                              "9999-12-30 (UTC)."},
    "idempotency_key": {**TEXT, "description": "A repeat with the same key returns the same "
                        "job (200) instead of a new one (201)."},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 1000},
    "timeout": {"type": "number", "minimum": 0.001, "maximum": 7 * 86400,
                "description": "Seconds per attempt."},
    "group": TEXT,
    "tags": {"type": "array", "items": TEXT, "maxItems": 50},
}, description="The options of `task.using(...)`.")
OPTIONS["not"] = {"required": ["delay", "run_at"]}
OPTIONS["x-not-message"] = "give delay or run_at, not both"
ARGS_MAX = 1000


def task_schema(task: Task[Any, Any]) -> dict[str, Any]:
    """The enqueue body of one task: its arguments' schemas come from its signature."""
    schema = obj({
        "task": {"type": "string", "const": task.name},
        "args": {"type": "array", "maxItems": ARGS_MAX,
                 "description": "Positional arguments (JSON; text without NUL)."},
        "kwargs": {"type": "object", "propertyNames": {"pattern": NO_NUL},
                   "description": "Keyword arguments (JSON; text without NUL)."},
        "options": OPTIONS,
    }, required=("task",), description=(task.fn.__doc__ or "").strip().split("\n")[0])
    schema["title"] = task.name
    schema["oneOf"] = call_schemas(task.fn, ARGS_MAX)
    schema["x-choice-message"] = (
        f"the arguments do not fit {task.name}'s signature (see this task's schema)"
    )
    return schema


ENQUEUE_SHAPE = obj({
    "task": TEXT,
    "args": {"type": "array", "maxItems": ARGS_MAX},
    "kwargs": {"type": "object"},
    "options": OPTIONS,
}, required=("task",))
"""Any task's enqueue body, before its arguments are judged against its signature."""


def _explain_enqueue(body: Any, conveyor: Conveyor) -> None:
    """Name the unknown task or the wrong argument of a body that fits no task's schema."""
    if isinstance(body, dict) and isinstance(body.get("jobs"), list):
        items = [(f"/jobs/{i}", item) for i, item in enumerate(body["jobs"])]
    else:
        items = [("", body)]
    for pointer, item in items:
        found = validate(item, ENQUEUE_SHAPE)
        if found:
            raise validation_problem(found, pointer)
        task: Task[Any, Any] = conveyor.get_task(item["task"])
        args, kwargs = normalize(item, ENQUEUE_SHAPE).get("args", []), item.get("kwargs", {})
        check_arguments(task, args, kwargs, pointer)
        _check_storable(task, args, kwargs, pointer)


def _check_storable(
    task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any], pointer: str
) -> None:
    if not (strings_storable(args) and strings_storable(kwargs)):
        raise Problem("invalid-arguments", f"{task.name}: arguments hold a NUL character, "
                      "which the job database cannot store: encode binary data (e.g. "
                      "base64) first", pointer=f"{pointer}/args")


_SCHEMAS: dict[tuple[int, tuple[tuple[str, int], ...]], dict[str, Any]] = {}


def enqueue_schema(conveyor: Conveyor) -> dict[str, Any]:
    """One job to enqueue: one of the app's registered tasks, each with its arguments."""
    key = (id(conveyor), tuple((name, id(t.fn)) for name, t in sorted(conveyor.tasks.items())))
    found = _SCHEMAS.get(key)
    if found is None:
        tasks = [task_schema(t) for _, t in sorted(conveyor.tasks.items())]
        found = {
            "type": "object", "required": ["task"],
            "properties": {"task": {"type": "string", "description": "A registered task's name.",
                                    **({"enum": [t["title"] for t in tasks]} if tasks else {})}},
            "oneOf": [*tasks] if tasks else [False],  # no task: nothing can be enqueued
            "discriminator": {"propertyName": "task"},
            "x-choice-message": "name a registered task and give arguments that fit it",
        }
        if len(_SCHEMAS) > 64:
            _SCHEMAS.clear()
        _SCHEMAS[key] = found
    return found


def bulk_schema(conveyor: Conveyor) -> dict[str, Any]:
    return obj({
        "jobs": {"type": "array", "items": enqueue_schema(conveyor), "minItems": 1,
                 "maxItems": BULK_MAX},
    }, required=("jobs",))


ERROR_ENTRY = obj({
    "attempt": {"type": "integer"}, "type": {"type": "string"}, "message": {"type": "string"},
    "traceback": {"type": "string"}, "worker": {"type": "string"}, "at": TIME,
})

JOB = obj({
    "id": {"type": "integer"},
    "task": {"type": "string"},
    "queue": {"type": "string"},
    "state": {"type": "string", "enum": STATES},
    "args": {"type": "array"},
    "kwargs": {"type": "object"},
    "priority": {"type": "integer"},
    "attempt": {"type": "integer"},
    "max_attempts": {"type": "integer"},
    "run_at": TIME,
    "created_at": TIME,
    "started_at": nullable(TIME),
    "finished_at": nullable(TIME),
    "idempotency_key": {"type": ["string", "null"]},
    "group": {"type": ["string", "null"]},
    "timeout": {"type": ["number", "null"]},
    "tags": {"type": "array", "items": {"type": "string"}},
    "limit": {"type": ["string", "null"], "description": "The flow-control limit it waits for."},
    "limit_key": {"type": ["string", "null"], "description": "Its key within the limit."},
    "waiting_for": {"type": ["string", "null"], "description": "Why an available job has not "
                    "started (GET /jobs/{job_id} only): e.g. `waiting for limit stripe: 25/s, "
                    "4,210 ahead`."},
    "result": {},
    "errors": {"type": "array", "items": ERROR_ENTRY},
}, required=("id", "task", "queue", "state"))

JOB_LIST = obj({
    "jobs": {"type": "array", "items": JOB},
    "next_cursor": {"type": ["string", "null"],
                    "description": "Pass as ?cursor= for the next page; null on the last."},
}, required=("jobs", "next_cursor"))

BULK_RESULT = obj({
    "jobs": {"type": "array", "items": obj({
        "created": {"type": "boolean"}, "job": JOB,
    }, required=("created", "job"))},
}, required=("jobs",))

DLQ_FILTER = obj({
    "task": TEXT,
    "queue": TEXT,
    "ids": {"type": "array", "items": JOB_ID, "minItems": 1, "maxItems": BULK_MAX},
    "fingerprint": text(16, 16, description="A group's fingerprint from GET /dlq."),
    "all": {"type": "boolean", "description": "Required (true) when no other filter is given."},
}, description="Which dead jobs: every given filter must match; at least one filter, "
               "or all: true.")
DLQ_FILTER["anyOf"] = [
    *({"required": [name]} for name in ("task", "queue", "ids", "fingerprint")),
    {"required": ["all"], "properties": {"all": {"const": True}}},
]
DLQ_FILTER["x-choice-message"] = (
    'name the dead jobs (task, queue, ids, fingerprint) or send "all": true to act on '
    "every dead job"
)

DEAD_GROUP = obj({
    "fingerprint": {"type": "string"}, "error_type": {"type": "string"},
    "message": {"type": "string"}, "example": {"type": "string"},
    "tasks": {"type": "array", "items": {"type": "string"}},
    "queues": {"type": "array", "items": {"type": "string"}},
    "count": {"type": "integer"},
    "job_ids": {"type": "array", "items": {"type": "integer"}},
    "newest_finished_at": nullable(TIME),
})

QUEUE = obj({
    "name": {"type": "string"},
    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
    "oldest_waiting_seconds": {"type": ["number", "null"]},
    "paused": {"type": "boolean"},
    "paused_at": nullable(TIME),
    "workers": {"type": "integer"},
    "finished_last_hour": obj({"succeeded": {"type": "integer"}, "dead": {"type": "integer"}}),
})

WORKER = obj({
    "id": {"type": "string"}, "hostname": {"type": "string"}, "pid": {"type": "integer"},
    "queues": {"type": "array", "items": {"type": "string"}},
    "concurrency": {"type": "integer"}, "running": {"type": "integer"},
    "started_at": TIME, "last_heartbeat_at": TIME,
    "seconds_since_heartbeat": {"type": "number"},
    "meta": {"type": "object", "description": "What the worker reports about itself."},
})

TOKEN = obj({
    "id": {"type": "integer"}, "name": {"type": "string"},
    "role": {"type": "string", "enum": ["viewer", "enqueuer", "operator", "admin"]},
    "tasks": {"type": "array", "items": {"type": "string"}},
    "queues": {"type": "array", "items": {"type": "string"}},
    "created_at": TIME, "last_used_at": nullable(TIME), "revoked_at": nullable(TIME),
    "expires_at": {**nullable(TIME), "description": "When it stops working (null: never)."},
    "expired": {"type": "boolean"},
    "token": {"type": "string", "description": "Only in the answer to its creation."},
})

SLO = {
    "type": "object",
    "required": ["objective", "sli", "target", "good", "total", "budget_left", "firing"],
    "properties": {
        "objective": {"type": "string"},
        "sli": {"type": "string", "enum": ["success", "wait"]},
        "task": {"type": ["string", "null"]},
        "queue": {"type": ["string", "null"]},
        "target": {"type": "number"},
        "window": {"type": "string"},
        "good": {"type": "integer"},
        "total": {"type": "integer"},
        "sli_value": {"type": ["number", "null"]},
        "budget_left": {"type": "number",
                        "description": "Fraction of the window's error budget left "
                                       "(1 untouched, below 0 overspent)."},
        "firing": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": True,
}

TOKEN_CREATE = obj({
    "name": text(pattern=r"^[^\u0000]*[^\s\u0000][^\u0000]*$",
                 description="Who uses it (not blank; surrounding blanks are dropped).",
                 message="must not be blank"),
    "role": {"type": "string", "enum": list(ROLES)},
    "tasks": {"type": "array", "items": TEXT, "maxItems": 100,
              "description": "enqueuer only: the only tasks it may enqueue."},
    "queues": {"type": "array", "items": TEXT, "maxItems": 100,
               "description": "enqueuer only: the only queues it may enqueue into."},
    "expires_in": {"type": "number", "minimum": 1, "maximum": 10 * 365 * 86400,
                   "description": "Seconds until the token stops working (default: never; "
                                  "it works until revoked)."},
}, required=("name", "role"))
TOKEN_SHAPE = dict(TOKEN_CREATE)
TOKEN_CREATE["anyOf"] = [
    {"properties": {"role": {"const": "enqueuer"}}},
    {"properties": {"tasks": {"maxItems": 0}, "queues": {"maxItems": 0}}},
]
TOKEN_CREATE["x-choice-message"] = (
    "only an enqueuer token can be limited to tasks or queues; other roles act on all"
)

AUDIT_ENTRY = obj({
    "id": {"type": "integer"},
    "at": TIME,
    "actor": {"type": "string", "description": "Who: `token:<name>#<id> (<role>)`, "
              "`cli:<user>@<host>`, ..."},
    "source": {"type": "string", "description": "From where: the client's address, or `cli`."},
    "action": {"type": "string", "description": "`job.retry`, `job.cancel`, `job.purge`, "
               "`queue.pause`, `queue.resume`, `token.create`, `token.revoke`, ..."},
    "target": {"type": "string", "description": "`job:12`, `jobs` (a filter), `queue:emails`, "
               "`token:5`."},
    "count": {"type": "integer", "description": "Jobs changed (1 or 0 for queue and token "
              "actions: changed or not)."},
    "params": {"type": "object", "description": "The action's filters and options."},
}, required=("id", "at", "actor", "source", "action", "target", "count", "params"))

AUDIT_LIST = obj({
    "entries": {"type": "array", "items": AUDIT_ENTRY},
    "next_cursor": {"type": ["string", "null"],
                    "description": "Pass as ?cursor= for the next page; null on the last."},
}, required=("entries", "next_cursor"))

QUEUE_STATE = obj({
    "queue": {"type": "string"}, "paused": {"type": "boolean"}, "changed": {"type": "boolean"},
})


JOB_ID_PARAM = Param("job_id", "path", JOB_ID, "The job's id.")
QUEUE_PARAM = Param("queue", "path", TEXT, "The queue's name.")

RATE = {"type": "string",
        "pattern": r"^[0-9]+(\.[0-9]+)?/(s|sec|second|m|min|minute|h|hour|d|day)$",
        "maxLength": 40, "x-pattern-message": "must be a rate like 25/s, 600/m or 1000/h"}
LIMIT = obj({
    "name": {"type": "string"},
    "rate": {"type": ["string", "null"]}, "rate_per_second": {"type": ["number", "null"]},
    "burst": {"type": ["number", "null"]}, "concurrency": {"type": ["integer", "null"]},
    "key_rate": {"type": ["string", "null"]}, "key_burst": {"type": ["number", "null"]},
    "key_concurrency": {"type": ["integer", "null"]}, "queue": {"type": ["string", "null"]},
    "overridden": {"type": "boolean", "description": "Set by an operator: deploys keep it."},
    "tokens": {"type": ["number", "null"]}, "running": {"type": "integer"},
    "waiting": {"type": "integer"}, "paused_for": {"type": "number"},
    "paused_reason": {"type": ["string", "null"]},
}, required=("name", "running", "waiting"))
LIMIT_SET = obj({
    "rate": RATE,
    "burst": {"type": "number", "minimum": 1, "maximum": 1e9},
    "concurrency": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "key_rate": RATE,
    "key_burst": {"type": "number", "minimum": 1, "maximum": 1e9},
    "key_concurrency": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "clear": {"type": "array", "maxItems": 4, "items": {
        "type": "string", "enum": ["rate", "concurrency", "key_rate", "key_concurrency"]}},
})


# -- enqueue ---------------------------------------------------------------------------
def _ops(call: ApiRequest) -> Operations:
    return call.state.conveyor.operations


def _job_for(call: ApiRequest, item: dict[str, Any], pointer: str) -> EnqueueJob:
    conveyor = call.state.conveyor
    task: Task[Any, Any] = conveyor.get_task(item["task"])
    args = item.get("args", [])
    kwargs = item.get("kwargs", {})
    check_arguments(task, args, kwargs, pointer)
    _check_storable(task, args, kwargs, pointer)
    options = dict(item.get("options", {}))
    if "run_at" in options:
        if "delay" in options:
            raise Problem("invalid-option", "give options.delay or options.run_at, not both",
                          pointer=f"{pointer}/options")
        options["run_at"] = parse_datetime(options["run_at"])
    queue = options.get("queue") or task.options.queue or conveyor.default_queue
    refusal = call.principal.may_enqueue(task.name, queue)
    if refusal:
        raise Problem("forbidden", refusal)
    return task.using(**options).prepare(*args, **kwargs)


def _header_key(call: ApiRequest) -> str | None:
    key = call.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not (1 <= len(key) <= 255):
        raise Problem("validation-error", "Idempotency-Key must be 1 to 255 characters",
                      errors=[{"pointer": "Idempotency-Key", "message": "1 to 255 characters"}])
    return key


def enqueue(call: ApiRequest) -> Reply:
    item = dict(call.body)
    key = _header_key(call)
    if key is not None:
        options = dict(item.get("options", {}))
        given = options.get("idempotency_key")
        if given is not None and given != key:
            raise Problem("invalid-option", "the Idempotency-Key header and "
                          "options.idempotency_key differ: give one of them")
        options["idempotency_key"] = key
        item["options"] = options
    job = _job_for(call, item, "")
    # The app's public enqueue path: middleware and the `enqueued` event, as in Python.
    # Never spooled: the client is told now whether the job is stored.
    result = call.state.conveyor.enqueue_jobs([job], when_unreachable="raise")[0]
    record = None if result.id is None else _ops(call).get_job(result.id)
    if record is None:  # pruned between the insert and the read: still report the id
        raise Problem("conflict", f"job {result.id} was enqueued but is already gone")
    return Reply(
        201 if result.created else 200, job_json(record),
        {"Location": f"{call.root_path}/api/v1/jobs/{result.id}"},
    )


def enqueue_bulk(call: ApiRequest) -> Reply:
    if _header_key(call) is not None:
        raise Problem("invalid-option", "Idempotency-Key applies to one job: give each job "
                      "its own options.idempotency_key in a bulk enqueue")
    prepared = [
        _job_for(call, item, f"/jobs/{i}") for i, item in enumerate(call.body["jobs"])
    ]
    results = call.state.conveyor.enqueue_jobs(prepared, when_unreachable="raise")
    ids = [r.id for r in results if r.id is not None]
    records = {r.id: r for r in _ops(call).list_jobs(JobFilter(ids=ids, limit=len(ids)))}
    jobs = [
        {"created": r.created, "job": job_json(records[r.id])}
        for r in results if r.id in records
    ]
    return Reply(201 if any(r.created for r in results) else 200, {"jobs": jobs})


# -- reading jobs ----------------------------------------------------------------------
def _time_param(call: ApiRequest, name: str) -> float | None:
    text = call.query.get(name)
    if text is None:
        return None
    value = parse_datetime(text)
    assert value is not None  # the schema checked the format
    return value.timestamp()


def list_jobs(call: ApiRequest) -> Reply:
    q = call.query
    limit = q.get("limit", 50)
    states = [JobState(s) for s in q.get("state", [])]
    before = decode_cursor(q["cursor"]) if "cursor" in q else None
    records = _ops(call).list_jobs(JobFilter(
        states=states, queue=q.get("queue"), task=q.get("task"), limit=limit + 1,
        before_id=before, created_after=_time_param(call, "created_after"),
        created_before=_time_param(call, "created_before"), error_text=q.get("error"),
    ))
    page = records[:limit]
    more = len(records) > limit
    return Reply(200, {
        "jobs": [job_json(r) for r in page],
        "next_cursor": encode_cursor(page[-1].id) if more and page else None,
    })


def _job_or_404(call: ApiRequest) -> Any:
    record = _ops(call).get_job(call.path["job_id"])
    if record is None:
        raise Problem("not-found", f"no job {call.path['job_id']} (never enqueued, or pruned)")
    return record


def get_job(call: ApiRequest) -> Reply:
    record = _job_or_404(call)
    return Reply(200, {**job_json(record), "waiting_for": _ops(call).why_waiting(record)})


def cancel_job(call: ApiRequest) -> Reply:
    record = _job_or_404(call)
    given = call.query.get("grace")
    grace = None if given is None else float(given)
    if not _ops(call).cancel(record.id, actor=call.actor, source=call.client, grace=grace):
        current = _ops(call).get_job(record.id)
        state = current.state if current else record.state
        raise Problem("conflict", f"job {record.id} is {state}: a finished job cannot be "
                      "cancelled", state=str(state))
    return Reply(200, job_json(_job_or_404(call)))


def signal_job(call: ApiRequest) -> Reply:
    record = _job_or_404(call)
    body = call.body
    try:
        outcome = _ops(call).signal(record.id, body["name"], body.get("payload"),
                                    actor=call.actor, source=call.client)
    except NotWaitingError as exc:
        raise Problem("conflict", str(exc), state=str(record.state)) from None
    except OperationError as exc:
        raise Problem("invalid-option", str(exc)) from None
    return Reply(200, {"job_id": record.id, "signal": body["name"], "outcome": outcome})


def job_steps(call: ApiRequest) -> Reply:
    record = _job_or_404(call)
    context, found = _ops(call).job_steps(record.id)
    return Reply(200, {"job_id": record.id, **steps_json(context, found)})


def retry_job(call: ApiRequest) -> Reply:
    record = _job_or_404(call)
    if not _ops(call).retry(JobFilter(ids=[record.id], limit=1), actor=call.actor,
                            source=call.client):
        current = _ops(call).get_job(record.id)
        state = current.state if current else record.state
        raise Problem("conflict", f"job {record.id} is {state}: only dead jobs can be retried",
                      state=str(state))
    return Reply(200, job_json(_job_or_404(call)))


# -- dead-letter queue ------------------------------------------------------------------
def list_dead(call: ApiRequest) -> Reply:
    groups, truncated = dead_groups(
        call.state.conveyor.backend, task=call.query.get("task"), queue=call.query.get("queue")
    )
    return Reply(200, {
        "groups": [g.to_json() for g in groups],
        "total": sum(len(g.job_ids) for g in groups),
        "truncated": truncated,
    })


def _dead_filter(call: ApiRequest) -> JobFilter | None:
    body = call.body
    filters = [k for k in ("task", "queue", "ids", "fingerprint") if k in body]
    if not filters and body.get("all") is not True:
        raise Problem("validation-error", "name the dead jobs (task, queue, ids, fingerprint) "
                      'or send "all": true to act on every dead job', errors=[])
    ids = list(body.get("ids", []))
    if "fingerprint" in body:
        in_group = group_job_ids(call.state.conveyor.backend, body["fingerprint"],
                                 task=body.get("task"), queue=body.get("queue"))
        ids = [i for i in ids if i in set(in_group)] if ids else in_group
        if not ids:
            return None
    return JobFilter(states=[JobState.DEAD], task=body.get("task"), queue=body.get("queue"),
                     ids=ids, limit=2**31 - 1)


def retry_dead(call: ApiRequest) -> Reply:
    found = _dead_filter(call)
    count = 0 if found is None else _ops(call).retry(found, actor=call.actor, source=call.client)
    return Reply(200, {"retried": count})


def purge_dead(call: ApiRequest) -> Reply:
    found = _dead_filter(call)
    count = 0 if found is None else _ops(call).purge(found, actor=call.actor, source=call.client)
    return Reply(200, {"purged": count})


# -- queues and workers ------------------------------------------------------------------
def list_queues(call: ApiRequest) -> Reply:
    views = queue_views(call.state.conveyor.backend, call.state.conveyor.lease)
    return Reply(200, {"queues": [v.to_json() for v in views]})


def pause_queue(call: ApiRequest) -> Reply:
    changed = _ops(call).pause_queue(call.path["queue"], actor=call.actor, source=call.client)
    return Reply(200, {"queue": call.path["queue"], "paused": True, "changed": changed})


def resume_queue(call: ApiRequest) -> Reply:
    changed = _ops(call).resume_queue(call.path["queue"], actor=call.actor, source=call.client)
    return Reply(200, {"queue": call.path["queue"], "paused": False, "changed": changed})


def list_limits(call: ApiRequest) -> Reply:
    return Reply(200, {"limits": [limit_json(s) for s in _ops(call).list_limits()]})


def set_limit(call: ApiRequest) -> Reply:
    body = call.body
    try:
        state = _ops(call).set_limit(
            call.path["name"], actor=call.actor, source=call.client,
            rate=body.get("rate"), burst=body.get("burst"),
            concurrency=body.get("concurrency"), key_rate=body.get("key_rate"),
            key_burst=body.get("key_burst"), key_concurrency=body.get("key_concurrency"),
            clear=body.get("clear", []),
        )
    except OperationError as exc:
        if "no limit named" in str(exc):
            raise Problem("not-found", str(exc)) from None
        raise Problem("invalid-option", str(exc)) from None
    return Reply(200, limit_json(state))


def list_workers(call: ApiRequest) -> Reply:
    from conveyor.web.views import alive_window

    backend = call.state.conveyor.backend
    now = backend.now()
    workers = backend.worker_list(alive_window(call.state.conveyor.lease))
    return Reply(200, {"workers": [worker_json(w, now) for w in workers]})


# -- tokens -------------------------------------------------------------------------------
def _token_json(token: Any) -> dict[str, Any]:
    from conveyor.web.views import iso

    return {
        "id": token.id, "name": token.name, "role": token.role,
        "tasks": list(token.tasks), "queues": list(token.queues),
        "created_at": iso(token.created_at), "last_used_at": iso(token.last_used_at),
        "revoked_at": iso(token.revoked_at), "expires_at": iso(token.expires_at),
        "expired": token.expired,
    }


def list_tokens(call: ApiRequest) -> Reply:
    tokens = _ops(call).list_tokens()
    return Reply(200, {"tokens": [_token_json(t) for t in tokens]})


def create_token_op(call: ApiRequest) -> Reply:
    body = call.body
    try:
        token, stored = _ops(call).create_token(
            name=body["name"], role=body["role"], tasks=body.get("tasks", []),
            queues=body.get("queues", []), expires_in=body.get("expires_in"),
            actor=call.actor, source=call.client,
        )
    except OperationError as exc:
        raise Problem("invalid-option", str(exc)) from None
    return Reply(201, {**_token_json(stored), "token": token})


def _explain_token(body: Any, conveyor: Conveyor) -> None:
    if not validate(body, TOKEN_SHAPE):
        raise Problem("invalid-option", TOKEN_CREATE["x-choice-message"])


def revoke_token(call: ApiRequest) -> Reply:
    if not _ops(call).revoke_token(call.path["token_id"], actor=call.actor,
                                   source=call.client):
        raise Problem("not-found", f"no live token {call.path['token_id']}")
    return Reply(204)


# -- audit log ------------------------------------------------------------------------------
def list_audit(call: ApiRequest) -> Reply:
    q = call.query
    limit = q.get("limit", 50)
    before = decode_cursor(q["cursor"]) if "cursor" in q else None
    entries = _ops(call).audit(AuditFilter(
        since=_time_param(call, "since"), until=_time_param(call, "until"),
        actor=q.get("actor"), action=q.get("action"), before_id=before, limit=limit + 1,
    ))
    page = entries[:limit]
    more = len(entries) > limit
    return Reply(200, {
        "entries": [audit_json(e) for e in page],
        "next_cursor": encode_cursor(page[-1].id) if more and page else None,
    })


# -- workflows ------------------------------------------------------------------------------
def list_workflows(call: ApiRequest) -> Reply:
    found = _ops(call).list_workflows(call.query.get("limit", 50))
    return Reply(200, {"workflows": [
        {"id": w.id, "name": w.name, "created_at": w.created_at,
         "cancelled_at": w.cancelled_at} for w in found
    ]})


def _workflow_or_404(call: ApiRequest) -> Any:
    view = _ops(call).get_workflow(call.path["workflow_id"])
    if view is None:
        raise Problem("not-found", f"no workflow {call.path['workflow_id']}")
    return view


def get_workflow(call: ApiRequest) -> Reply:
    return Reply(200, _workflow_or_404(call).to_json())


def cancel_workflow(call: ApiRequest) -> Reply:
    cancelled = _ops(call).cancel_workflow(call.path["workflow_id"], actor=call.actor,
                                           source=call.client)
    if cancelled is None:
        raise Problem("not-found", f"no workflow {call.path['workflow_id']}")
    return Reply(200, {"cancelled": cancelled, "workflow": _workflow_or_404(call).to_json()})


def list_slos(call: ApiRequest) -> Reply:
    rows = slo_rows(call.state.conveyor)
    for row in rows:
        row.pop("budget_left_clamped", None)
    return Reply(200, {"slos": rows})


def health(call: ApiRequest) -> Reply:
    call.state.conveyor.backend.schema_check()
    return Reply(200, {"status": "ok"})


# -- workflow schemas -----------------------------------------------------------------------
EPOCH = {"type": "number", "description": "Seconds since the epoch (the database's clock)."}
WORKFLOW_ID_PARAM = Param(
    "workflow_id", "path", {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "The workflow's id (32 hex digits), as enqueue_workflow returned it.", required=True)
WORKFLOW_SUMMARY = obj({
    "id": {"type": "string"}, "name": {"type": "string"}, "created_at": EPOCH,
    "cancelled_at": nullable(EPOCH),
}, required=("id", "name", "created_at", "cancelled_at"))
WORKFLOW_NODE = obj({
    "job_id": {"type": "integer"}, "name": {"type": "string"}, "task": {"type": "string"},
    "queue": {"type": "string"},
    "state": {"type": "string", "enum": [*STATES, "pending"],
              "description": "The job's state, or pending while it waits for its parents."},
    "waiting_for": {"type": "integer", "description": "Parents not finished yet."},
    "failed_parents": {"type": "integer"},
    "runs_when": {"type": "string", "enum": ["succeeded", "finished", "failed"]},
    "inputs": {"type": "string", "enum": ["none", "previous", "all"]},
    "priority": {"type": "integer"}, "attempt": {"type": "integer"},
    "max_attempts": {"type": "integer"}, "created_at": EPOCH,
    "started_at": nullable(EPOCH), "finished_at": nullable(EPOCH),
}, required=("job_id", "name", "task", "queue", "state", "waiting_for", "failed_parents",
             "runs_when", "inputs", "priority", "attempt", "max_attempts", "created_at",
             "started_at", "finished_at"))
WORKFLOW = obj({
    **WORKFLOW_SUMMARY["properties"],
    "counts": {"type": "object", "additionalProperties": {"type": "integer"},
               "description": "Nodes per state (progress)."},
    "nodes": {"type": "array", "items": WORKFLOW_NODE},
    "edges": {"type": "array", "items": obj({
        "parent": {"type": "integer"}, "child": {"type": "integer"},
        "position": {"type": "integer"},
    }, required=("parent", "child", "position"))},
}, required=("id", "name", "created_at", "cancelled_at", "counts", "nodes", "edges"))

# -- the table ------------------------------------------------------------------------------
OK_JOB = {200: ("The job.", JOB)}
JOB_LINKS = {
    name: {"operationId": op, "parameters": {"job_id": "$response.body#/id"}}
    for name, op in (("get", "get_job"), ("cancel", "cancel_job"), ("retry", "retry_job"))
}

ENDPOINTS: list[ApiEndpoint] = [
    ApiEndpoint("GET", "/health", "health", "Is the job database reachable and current?",
             None, health, {200: ("Healthy.", obj({"status": {"type": "string"}}))},
             tag="meta", probe=True,
             description="Public. Limited per address by its own bucket, ten times the "
                         "API's rate and burst, so load-balancer probes are never "
                         "throttled by (or counted against) the API's limit."),
    ApiEndpoint("POST", "/jobs", "enqueue", "Enqueue a job", Permission.ENQUEUE, enqueue,
             {201: ("Enqueued: a new job.", JOB),
              200: ("An idempotent repeat: the job the key already named.", JOB)},
             body=enqueue_schema,
             problems=("unknown-task", "invalid-arguments", "invalid-option", "conflict"),
             links={201: JOB_LINKS, 200: JOB_LINKS}, explain=_explain_enqueue,
             description="Arguments are checked against the task's signature; a wrong one "
                         "is a 422 whose `argument` member names it. An `Idempotency-Key` "
                         "header is the same as options.idempotency_key (both, differing, is "
                         "a 422 invalid-option); it is not a declared parameter because the "
                         "document cannot say that the two must agree."),
    ApiEndpoint("POST", "/jobs/bulk", "enqueue_bulk", "Enqueue many jobs in one transaction",
             Permission.ENQUEUE, enqueue_bulk,
             {201: ("Enqueued (some or all new).", BULK_RESULT),
              200: ("Every job was an idempotent repeat.", BULK_RESULT)},
             body=bulk_schema, explain=_explain_enqueue,
             problems=("unknown-task", "invalid-arguments", "invalid-option"),
             description="All or nothing: one invalid job and none is enqueued. Each job "
                         "takes its own options.idempotency_key; an Idempotency-Key header "
                         "is refused (422 invalid-option)."),
    ApiEndpoint("GET", "/jobs", "list_jobs", "List jobs, newest first", Permission.READ,
             list_jobs, {200: ("A page of jobs.", JOB_LIST)},
             params=(
                 Param("state", "query", {"type": "array", "items": {"type": "string",
                       "enum": STATES}, "maxItems": 6}, "Repeat for several states."),
                 Param("queue", "query", TEXT, "Only this queue."),
                 Param("task", "query", TEXT, "Only this task."),
                 Param("created_after", "query", TIME, "Created at or after."),
                 Param("created_before", "query", TIME, "Created before."),
                 Param("error", "query", text(1, 200),
                       "Text in the error history (any case)."),
                 Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": LIST_MAX},
                       "Page size (default 50)."),
                 Param("cursor", "query", {"type": "string", "pattern": CURSOR_PATTERN,
                                           "maxLength": 64},
                       "next_cursor of the previous page.", invalid=INVALID_CURSOR),
             ), problems=("invalid-cursor",)),
    ApiEndpoint("GET", "/jobs/{job_id}", "get_job", "Get a job with its error history",
             Permission.READ, get_job, OK_JOB, params=(JOB_ID_PARAM,)),
    ApiEndpoint("POST", "/jobs/{job_id}/cancel", "cancel_job", "Cancel a job, running or not",
             Permission.OPERATE, cancel_job, OK_JOB,
             params=(JOB_ID_PARAM, Param(
                 "grace", "query", {"type": "number", "minimum": 0, "maximum": 86400},
                 "A running job's seconds to stop by itself before it is stopped hard "
                 "(default 10).")),
             problems=("conflict",),
             description="A job that has not started, or waits in ctx.sleep/ctx.wait_for, is "
                         "cancelled at once. A running job is asked to stop (ctx.cancelled) "
                         "and stopped hard after the grace; it stays `running` until then."),
    ApiEndpoint("POST", "/jobs/{job_id}/signal", "signal_job",
             "Wake a job waiting for a signal", Permission.OPERATE, signal_job,
             {200: ("Delivered: `woken` (due now) or `delivered` (due once it gives its "
                    "slot back).", obj({
                        "job_id": {"type": "integer"}, "signal": {"type": "string"},
                        "outcome": {"type": "string", "enum": ["woken", "delivered"]},
                    }))},
             params=(JOB_ID_PARAM,),
             body=obj({"name": text(1, 193), "payload": ANY_JSON}, required=("name",)),
             problems=("conflict", "invalid-option"),
             description="The job must be inside `ctx.wait_for(name)`; otherwise 409."),
    ApiEndpoint("GET", "/jobs/{job_id}/steps", "job_steps",
             "A job's progress, metadata and durable steps", Permission.READ, job_steps,
             {200: ("Progress, metadata and steps in the order they started.", {
                 "type": "object"})},
             params=(JOB_ID_PARAM,)),
    ApiEndpoint("POST", "/jobs/{job_id}/retry", "retry_job", "Run a dead job again",
             Permission.OPERATE, retry_job, OK_JOB, params=(JOB_ID_PARAM,),
             problems=("conflict",)),
    ApiEndpoint("GET", "/workflows", "list_workflows", "List workflows, newest first",
             Permission.READ, list_workflows,
             {200: ("Workflows.", obj({"workflows": {"type": "array", "items": WORKFLOW_SUMMARY}},
                                       required=("workflows",)))},
             params=(Param("limit", "query", {"type": "integer", "minimum": 1,
                                               "maximum": LIST_MAX}, "How many (default 50)."),),
             tag="workflows"),
    ApiEndpoint("GET", "/workflows/{workflow_id}", "get_workflow",
             "Get a workflow as a graph: each node with its state, and the edges",
             Permission.READ, get_workflow, {200: ("The workflow.", WORKFLOW)},
             params=(WORKFLOW_ID_PARAM,), tag="workflows"),
    ApiEndpoint("POST", "/workflows/{workflow_id}/cancel", "cancel_workflow",
             "Cancel every node of a workflow that has not started",
             Permission.OPERATE, cancel_workflow,
             {200: ("How many nodes were cancelled, and the workflow.", obj({
                 "cancelled": {"type": "integer"}, "workflow": WORKFLOW,
             }, required=("cancelled", "workflow")))},
             params=(WORKFLOW_ID_PARAM,), tag="workflows",
             description="None of the cancelled nodes starts afterwards; running nodes "
                         "finish. Repeating it cancels nothing more (cancelled: 0)."),
    ApiEndpoint("GET", "/dlq", "list_dead", "Dead jobs grouped by error type and message",
             Permission.READ, list_dead,
             {200: ("Groups, biggest first.", obj({
                 "groups": {"type": "array", "items": DEAD_GROUP},
                 "total": {"type": "integer"}, "truncated": {"type": "boolean"},
             }))},
             params=(Param("task", "query", TEXT, "Only this task."),
                     Param("queue", "query", TEXT, "Only this queue.")), tag="dlq"),
    ApiEndpoint("POST", "/dlq/retry", "retry_dead", "Retry the dead jobs matching a filter",
             Permission.OPERATE, retry_dead,
             {200: ("How many were retried.", obj({"retried": {"type": "integer"}}))},
             body=DLQ_FILTER, tag="dlq"),
    ApiEndpoint("POST", "/dlq/purge", "purge_dead", "Delete the dead jobs matching a filter",
             Permission.OPERATE, purge_dead,
             {200: ("How many were deleted.", obj({"purged": {"type": "integer"}}))},
             body=DLQ_FILTER, tag="dlq"),
    ApiEndpoint("GET", "/queues", "list_queues", "Queues: counts by state, oldest waiting, "
             "throughput, workers, paused", Permission.READ, list_queues,
             {200: ("Every known queue.", obj({"queues": {"type": "array", "items": QUEUE}}))},
             tag="queues"),
    ApiEndpoint("POST", "/queues/{queue}/pause", "pause_queue", "Pause a queue (workers fetch "
             "none of its jobs; running ones finish)", Permission.OPERATE, pause_queue,
             {200: ("Paused.", QUEUE_STATE)}, params=(QUEUE_PARAM,), tag="queues"),
    ApiEndpoint("POST", "/queues/{queue}/resume", "resume_queue", "Resume a paused queue",
             Permission.OPERATE, resume_queue, {200: ("Resumed.", QUEUE_STATE)},
             params=(QUEUE_PARAM,), tag="queues"),
    ApiEndpoint("GET", "/limits", "list_limits", "Flow-control limits: numbers, running, "
             "waiting, pauses", Permission.READ, list_limits,
             {200: ("Every limit.", obj({"limits": {"type": "array", "items": LIMIT}}))},
             tag="queues"),
    ApiEndpoint("POST", "/limits/{name}", "set_limit", "Change a limit at run time (kept across "
             "deploys until reset; workers apply it at their next fetch)", Permission.OPERATE,
             set_limit, {200: ("The limit as it is now.", LIMIT)}, body=LIMIT_SET,
             params=(Param("name", "path", TEXT, "The limit's name."),),
             problems=("invalid-option", "not-found"), tag="queues"),
    ApiEndpoint("GET", "/slos", "list_slos", "Each objective's SLIs with error budget and burn "
             "rates", Permission.READ, list_slos,
             {200: ("Every SLI of every declared objective.",
                    obj({"slos": {"type": "array", "items": SLO}}))}, tag="queues"),
    ApiEndpoint("GET", "/workers", "list_workers", "Workers alive, with their last heartbeat",
             Permission.READ, list_workers,
             {200: ("Workers.", obj({"workers": {"type": "array", "items": WORKER}}))},
             tag="workers"),
    ApiEndpoint("GET", "/tokens", "list_tokens", "API tokens (never the tokens themselves)",
             Permission.ADMIN, list_tokens,
             {200: ("Tokens.", obj({"tokens": {"type": "array", "items": TOKEN}}))},
             tag="tokens"),
    ApiEndpoint("POST", "/tokens", "create_token", "Create a token (shown once, in this answer)",
             Permission.ADMIN, create_token_op, {201: ("Created.", TOKEN)},
             body=TOKEN_CREATE, problems=("invalid-option",), tag="tokens",
             explain=_explain_token,
             links={201: {"revoke": {"operationId": "revoke_token",
                                     "parameters": {"token_id": "$response.body#/id"}}}}),
    ApiEndpoint("DELETE", "/tokens/{token_id}", "revoke_token", "Revoke a token at once",
             Permission.ADMIN, revoke_token, {204: ("Revoked.", None)},
             params=(Param("token_id", "path", JOB_ID, "The token's id."),), tag="tokens"),
    ApiEndpoint("GET", "/audit", "list_audit", "The audit log: who did what, when and from where",
             Permission.ADMIN, list_audit, {200: ("A page of entries, newest first.", AUDIT_LIST)},
             params=(
                 Param("since", "query", TIME, "Entries at or after."),
                 Param("until", "query", TIME, "Entries before."),
                 Param("actor", "query", {"type": "string", "minLength": 1, "maxLength": 255},
                       "Any part of the actor."),
                 Param("action", "query", {"type": "string", "minLength": 1, "maxLength": 100},
                       "Only this action, e.g. job.retry."),
                 Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": LIST_MAX},
                       "Page size (default 50)."),
                 Param("cursor", "query", {"type": "string", "pattern": CURSOR_PATTERN,
                                           "maxLength": 64},
                       "next_cursor of the previous page.", invalid=INVALID_CURSOR),
             ), problems=("invalid-cursor",), tag="audit",
             description="Every operator and admin action (retry, cancel, purge, pause, "
                         "resume, token create and revoke), recorded in the transaction of "
                         "the action itself."),
]
