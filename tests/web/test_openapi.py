"""The OpenAPI document matches the code, and no generated input makes the API fail.

The property-based part reads the document the live app serves, builds
requests from it with hypothesis (valid ones and deliberately wrong ones),
and checks every answer: never a 5xx, always a documented status, a body
that fits the documented schema, and problem+json for every error.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.testing import drain
from conveyor.web import create_app
from conveyor.web.app import api_endpoints
from conveyor.web.problems import PROBLEMS, TYPE_PREFIX
from conveyor.web.routing import API_PREFIX, encode_cursor
from conveyor.web.schema import validate
from tests.web.conftest import Web, register_tasks

EXAMPLES = 40
TASKS = ["add", "send_mail", "poison", "flaky", "flexible"]


@pytest.fixture
def document(web: Web) -> dict[str, Any]:
    r = web.client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def test_the_document_lists_exactly_the_routes_the_app_serves(web: Web, document: Any) -> None:
    served = set()
    for route in web.client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path.startswith(API_PREFIX):
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((method.lower(), route.path))
    documented = {
        (method, path) for path, operations in document["paths"].items() for method in operations
    }
    assert served == documented
    operation_ids = [
        op["operationId"] for ops in document["paths"].values() for op in ops.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


def test_each_operation_documents_its_parameters_permission_and_problems(
    web: Web, document: Any
) -> None:
    by_id = {ep.operation_id: ep for ep in api_endpoints()}
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            endpoint = by_id[op["operationId"]]
            assert method.upper() == endpoint.method
            assert op["x-conveyor-permission"] == (
                endpoint.permission.value if endpoint.permission else "public"
            )
            in_path = set(re.findall(r"{(\w+)}", path))
            assert in_path == {p["name"] for p in op["parameters"] if p["in"] == "path"}
            if endpoint.body is not None:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                # the very schema that validates requests
                assert resolved(schema, document) == endpoint.body_schema(web.app)
            for status in op["responses"]:
                assert re.fullmatch(r"[1-5]\d\d", status)
            problem_statuses = {int(s) for s in op["responses"] if int(s) >= 400}
            assert 500 in problem_statuses and 422 in problem_statuses
            if endpoint.permission is not None:
                assert {401, 403} <= problem_statuses


def resolved(schema: Any, document: dict[str, Any]) -> Any:
    """`schema` with its $refs to the document's components replaced by what they name
    (and the discriminator mappings that name them dropped)."""
    if isinstance(schema, list):
        return [resolved(item, document) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return resolved(document["components"]["schemas"][name], document)
    out = {k: resolved(v, document) for k, v in schema.items()}
    if isinstance(out.get("discriminator"), dict):
        out["discriminator"] = {k: v for k, v in out["discriminator"].items() if k != "mapping"}
    return out


def test_every_problem_type_is_documented_once(document: Any) -> None:
    some_op = next(iter(next(iter(document["paths"].values())).values()))
    enum = some_op["responses"]["500"]["content"]["application/problem+json"]["schema"][
        "properties"]["type"]["enum"]
    assert enum == [TYPE_PREFIX + slug for slug in PROBLEMS]


# -- generating requests from the document --------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


def from_schema(schema: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Values that fit `schema` (the subset the API uses)."""
    if name == "task":
        return st.sampled_from(TASKS) | st.text(min_size=1, max_size=10)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, name) for k in kind])
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
                                timezones=st.just(UTC)).map(lambda d: d.isoformat())
        return st.text(min_size=schema.get("minLength", 0),
                       max_size=min(schema.get("maxLength", 30), 30))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False,
                         allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = schema.get("items")
        return st.lists(from_schema(items) if items else JSON,
                        min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object":
        props = schema.get("properties", {})
        if not props:
            return st.dictionaries(st.text(max_size=8), JSON, max_size=4)
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v, k) for k, v in props.items() if k in required},
            optional={k: from_schema(v, k) for k, v in props.items() if k not in required},
        )
    return JSON


def fuzzed(schema: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Mostly (7 in 8) values that fit, sometimes anything at all."""
    valid = from_schema(schema, name)
    return st.integers(0, 7).flatmap(lambda n: JSON if n == 0 else valid)


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


HEADER_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=0,
                      max_size=40)


def operations() -> list[tuple[str, str]]:
    return [(ep.method.lower(), API_PREFIX + ep.path) for ep in api_endpoints()]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Web, dict[str, Any]]]:
    """One live app (SQLite; the backends have their own contract suite) for the whole run."""
    app = Conveyor(f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'jobs.db'}",
                   poll_interval=0.05, lease=5.0)
    register_tasks(app)
    app.get_task("poison").enqueue(1)
    app.get_task("add").enqueue(1)
    drain(app, timeout=10)
    client = TestClient(create_app(app, auth=False), base_url="http://127.0.0.1")
    web = Web(app, client, {})
    yield web, client.get("/api/v1/openapi.json").json()
    client.close()
    app.close()


@pytest.mark.parametrize(("method", "path"), operations())
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(
    live: tuple[Web, dict[str, Any]], method: str, path: str, data: st.DataObject
) -> None:
    web, doc = live
    op = doc["paths"][path][method]
    url = path
    params: dict[str, Any] = {}
    headers: dict[str, str] = {}
    for p in op["parameters"]:
        if p["in"] == "path":
            value = data.draw(fuzzed(p["schema"]) | st.integers(1, 20), label=p["name"])
            url = url.replace("{" + p["name"] + "}", quote(as_text(value), safe="") or "x")
        elif p["in"] == "query" and data.draw(st.booleans(), label=f"send {p['name']}"):
            value = data.draw(fuzzed(p["schema"]), label=p["name"])
            params[p["name"]] = [as_text(v) for v in value] if isinstance(value, list) else (
                as_text(value))
        elif p["in"] == "header" and data.draw(st.booleans(), label=f"send {p['name']}"):
            headers[p["name"]] = data.draw(HEADER_TEXT, label=p["name"])
    kwargs: dict[str, Any] = {"params": params, "headers": headers}
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        kwargs["json"] = data.draw(fuzzed(schema), label="body")
    response = web.client.request(method.upper(), url, **kwargs)

    assert response.status_code < 500, (method, url, kwargs, response.text)
    documented = op["responses"].get(str(response.status_code))
    assert documented is not None, (method, url, response.status_code, response.text)
    if response.status_code == 204:
        return
    media, content = next(iter(documented["content"].items()))
    assert response.headers["content-type"].startswith(media), response.headers
    body = response.json()
    assert validate(body, content["schema"]) == [], (method, url, body)
    if response.status_code >= 400:
        assert body["status"] == response.status_code and "Traceback" not in response.text


def test_the_api_docs_list_exactly_the_documented_operations(document: Any) -> None:
    """docs/api.md's table of operations is checked against the served document."""
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    table = text.split("## Operations", 1)[1].split("###", 1)[0]
    rows = re.findall(r"^\| `(\w+) (/api/v1/\S*)`\s*\| (\w+)\s*\|", table, re.MULTILINE)
    in_docs = {(m.lower(), re.sub(r"{\w+}", "{}", p), perm) for m, p, perm in rows}
    served = {
        (method, re.sub(r"{\w+}", "{}", path), op["x-conveyor-permission"])
        for path, operations in document["paths"].items() for method, op in operations.items()
    }
    assert in_docs == served, (sorted(in_docs - served), sorted(served - in_docs))


def test_enqueue_schema_lists_the_tasks_and_their_arguments(web: Web, document: Any) -> None:
    body = document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert body["properties"]["task"]["enum"] == sorted(TASKS)
    mapping = body["discriminator"]["mapping"]
    assert sorted(mapping) == sorted(TASKS)
    add = resolved({"$ref": mapping["add"]}, document)
    forms = add["oneOf"]  # 0, 1 or 2 positional arguments
    assert [f["properties"]["args"].get("prefixItems", []) for f in forms] == [
        [], [{"type": "integer"}], [{"type": "integer"}, {"type": "integer"}]]
    assert forms[0]["properties"]["kwargs"]["required"] == ["a"]
    assert forms[1]["properties"]["kwargs"]["properties"] == {"b": {"type": "integer"}}
    for good in ({"task": "add", "args": [92.0]}, {"task": "add", "kwargs": {"a": 1, "b": 2}}):
        r = web.client.post("/api/v1/jobs", json=good, headers=web.as_role("enqueuer"))
        assert r.status_code == 201 and r.json()["args"] in ([92], []), r.text
    for bad in ({"task": "add", "args": [1], "kwargs": {"a": 1}}, {"task": "add"},
                {"task": "add", "args": [1.5]}):
        r = web.client.post("/api/v1/jobs", json=bad, headers=web.as_role("enqueuer"))
        assert r.status_code == 422 and r.json()["type"].endswith("invalid-arguments"), r.text


def test_every_path_answers_405_with_allow(web: Web, document: Any) -> None:
    for path, operations in document["paths"].items():
        url = re.sub(r"{\w+}", "1", path)
        r = web.client.request("TRACE", url, headers=web.as_role("admin"))
        assert r.status_code == 405, (path, r.text)
        assert set(r.headers["allow"].split(", ")) - {"HEAD"} == {m.upper() for m in operations}


def test_integral_floats_are_integers_and_cursors_are_exact(web: Web) -> None:
    admin = web.as_role("admin")
    r = web.client.post("/api/v1/dlq/purge", json={"ids": [92.0]}, headers=admin)
    assert r.status_code == 200, r.text
    assert web.client.post("/api/v1/dlq/purge", json={}, headers=admin).status_code == 422
    assert web.client.get("/api/v1/jobs?limit=2.0", headers=admin).status_code == 200
    assert web.client.get("/api/v1/jobs?limit=2.5", headers=admin).status_code == 422
    ok = web.client.get("/api/v1/jobs?cursor=" + encode_cursor(5), headers=admin)
    assert ok.status_code == 200
    for bad in ("djE6MR", "djE6MQ%0A", "0" * 64):
        r = web.client.get(f"/api/v1/jobs?cursor={bad}", headers=admin)
        assert r.status_code == 400 and r.json()["type"].endswith("invalid-cursor"), bad


def test_a_fixed_path_is_not_taken_for_a_parameter(web: Web) -> None:
    r = web.client.get("/api/v1/jobs/bulk", headers=web.as_role("admin"))
    assert r.status_code == 405 and r.headers["allow"] == "POST", r.text


# -- the argument schemas judge exactly as the enqueue check does -----------------------------
def _signatures() -> list[Any]:
    from typing import Literal

    def add(a: int, b: int = 1) -> None: ...
    def mail(to: str, subject: str, *, urgent: bool = False) -> None: ...
    def flexible(*args: Any, **kwargs: Any) -> None: ...
    def typed(ids: list[int], mode: Literal["fast", 2], /,
              labels: dict[str, float] | None = None, *, note: str | None) -> None: ...
    def mixed(x, /, y=None, *rest: int, z: float, **extra: bool) -> None: ...  # type: ignore[no-untyped-def]

    return [add, mail, flexible, typed, mixed]


SMALL_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([1.0, 2.5, -0.0])
    | st.sampled_from(["", "a", "fast"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["a", "b", "to", "x", "y", "z", "note", "k"]), inner, max_size=3),
    max_leaves=6,
)
NAMES = st.sampled_from(["a", "b", "to", "subject", "urgent", "ids", "mode", "labels", "note",
                         "x", "y", "z", "rest", "extra", "args", "kwargs", "q"])


@settings(max_examples=300, deadline=None, database=None)
@given(which=st.integers(0, 4), args=st.lists(SMALL_JSON, max_size=4),
       kwargs=st.dictionaries(NAMES, SMALL_JSON, max_size=4))
def test_call_schemas_accept_exactly_what_check_arguments_accepts(
    which: int, args: list[Any], kwargs: dict[str, Any]
) -> None:
    from conveyor.arguments import ArgumentChecker
    from conveyor.task import Task
    from conveyor.web.api import _check_storable, task_schema
    from conveyor.web.arguments import check_arguments
    from conveyor.web.problems import Problem
    from conveyor.web.schema import normalize

    fn = _signatures()[which]
    task = Task.__new__(Task)
    task.fn, task.name = fn, fn.__name__
    task.checker = ArgumentChecker(fn, fn.__name__)
    schema = task_schema(task)
    body = {"task": task.name, "args": args, "kwargs": kwargs}
    fits = not validate(body, schema)
    # The same verdict as a standard JSON Schema 2020-12 validator's (schemathesis' own).
    assert jsonschema_rs.Draft202012Validator(schema).is_valid(body) == fits, (fn.__name__, body)
    try:
        normal = normalize(body, schema) if fits else body
        check_arguments(task, normal["args"], normal["kwargs"])
        _check_storable(task, normal["args"], normal["kwargs"], "")
        accepted = True
    except Problem:
        accepted = False
    assert fits == accepted, (fn.__name__, args, kwargs, validate(body, schema))


def test_nul_in_typed_text_is_refused_by_schema_and_server(web: Web) -> None:
    """(In free-form JSON the rule is only written down: no JSON Schema says "no NUL
    anywhere inside"; the server refuses it on both backends all the same.)"""
    from conveyor.web.api import enqueue_schema

    schema = enqueue_schema(web.app)
    for body in ({"task": "send_mail", "args": ["a\x00", "b"]},
                 {"task": "flexible", "kwargs": {"k": ["a\x00"]}}):
        r = web.client.post("/api/v1/jobs", json=body, headers=web.as_role("enqueuer"))
        assert r.status_code == 422 and r.json()["type"].endswith("invalid-arguments"), r.text
    assert validate({"task": "send_mail", "args": ["a\x00", "b"]}, schema)
