"""Composition: chains, groups, chords, DAGs (`depends_on`) and batches with callbacks.

    wf = Workflow("import")
    parts = [wf.add(load.prepare(i)) for i in range(10)]
    wf.add(total.prepare_partial(), depends_on=parts, inputs="all")
    handle = app.enqueue_workflow(wf)                 # one transaction (connection= too)

    app.enqueue_workflow(chain(fetch.prepare(url), parse.prepare_partial()))
    app.enqueue_workflow(chord([square.prepare(i) for i in range(100)],
                               add_up.prepare_partial()))

There is no engine beside the jobs: each node is a job, plus a row saying how it
depends on others. A node that waits for its parents is stored `scheduled` at the
end of time (`PENDING_RUN_AT`), which nothing stages or fetches; the completion of
its last parent releases it (or cancels it) in the same fenced transaction, on both
backends. From then on it is an ordinary job: priorities, queues, retries, leases,
rescue and flow-control limits apply to it as to any other.

When a node runs (`runs_when`): `succeeded` (the default) once every parent
succeeded, cancelled as soon as one did not (dead or cancelled), and its own
dependants with it; `finished` once every parent finished, whatever the outcome
("run anyway"); `failed` once every parent finished and one did not succeed (a
batch's on_failure), cancelled when all succeeded.

What it receives (`inputs`): `none`, its own arguments; `previous`, its one
parent's result before its own arguments (a chain link); `all`, the list of its
parents' results in the order they were given (None for one that did not
succeed), before its own arguments (a chord callback; `[]` over zero parents).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from conveyor.backends.base import (
    PENDING_RUN_AT,
    Inputs,
    InsertResult,
    JobInsert,
    NodeInsert,
    RunsWhen,
    WorkflowInsert,
    WorkflowStore,
)
from conveyor.errors import InvalidOptionError, WorkflowCycleError
from conveyor.job import Job
from conveyor.middleware import Attempt, AttemptNext, AttemptResult, EnqueueJob, Middleware

TAG_PREFIX = "workflow:"
"""Every job of a workflow carries the tag `workflow:<id>`: the worker then knows to
look for its parents' results, and its completion to release its dependants."""

_RUNS_WHEN = ("succeeded", "finished", "failed")
_INPUTS = ("none", "previous", "all")


@dataclass(frozen=True, slots=True)
class Node:
    """A node of one `Workflow`: pass it in another node's `depends_on`."""

    index: int
    workflow: Workflow = field(repr=False, compare=False)


@dataclass(slots=True)
class _Spec:
    job: EnqueueJob
    parents: tuple[int, ...]
    runs_when: RunsWhen
    inputs: Inputs
    name: str


class Workflow:
    """A graph of jobs to insert together with `app.enqueue_workflow(...)`."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._specs: list[_Spec] = []

    def __len__(self) -> int:
        return len(self._specs)

    def add(
        self,
        job: EnqueueJob,
        *,
        depends_on: Sequence[Node] = (),
        runs_when: RunsWhen = "succeeded",
        inputs: Inputs = "none",
        name: str = "",
    ) -> Node:
        """Add `job` (from `task.prepare(...)` or `task.prepare_partial(...)`), to start
        once `depends_on` are done as `runs_when` says. Nodes may be added in any
        order; `depends_on` may name a node added later (see `after`)."""
        if not isinstance(job, EnqueueJob):
            raise InvalidOptionError(
                f"a workflow node is a prepared job (task.prepare(...)), got {type(job).__name__}"
            )
        if runs_when not in _RUNS_WHEN:
            raise InvalidOptionError(
                f"runs_when must be one of {', '.join(_RUNS_WHEN)}, got {runs_when!r}"
            )
        if inputs not in _INPUTS:
            raise InvalidOptionError(
                f"inputs must be one of {', '.join(_INPUTS)}, got {inputs!r}"
            )
        if job.idempotency_key is not None:
            raise InvalidOptionError(
                f"a workflow node cannot have an idempotency key ({job.task}): an existing "
                "job cannot join a new graph; make the workflow's first node idempotent "
                "in your own code, or enqueue it alone"
            )
        node = Node(len(self._specs), self)
        self._specs.append(_Spec(job, (), runs_when, inputs, name or job.task))
        self.after(node, *depends_on)
        return node

    def after(self, node: Node, *parents: Node) -> None:
        """Make `node` depend on `parents` too (edges may form any DAG; a cycle is
        refused when the workflow is enqueued)."""
        self._own(node)
        spec = self._specs[node.index]
        given = list(spec.parents)
        for parent in parents:
            self._own(parent)
            if parent.index in given:
                raise InvalidOptionError(
                    f"node {node.index} ({spec.name}) depends on node {parent.index} twice"
                )
            given.append(parent.index)
        if spec.inputs == "previous" and len(given) > 1:
            raise InvalidOptionError(
                f"node {node.index} ({spec.name}) takes its previous node's result "
                "(inputs='previous'), so it can have one parent only: use inputs='all'"
            )
        spec.parents = tuple(given)

    def _own(self, node: Node) -> None:
        if not isinstance(node, Node) or node.workflow is not self:
            raise InvalidOptionError(
                f"depends_on takes nodes of the same workflow (wf.add(...) results), got {node!r}"
            )

    def check(self) -> None:
        """Raise `WorkflowCycleError` naming a cycle, if `depends_on` forms one."""
        state = [0] * len(self._specs)  # 0 new, 1 on the path, 2 done
        for start in range(len(self._specs)):
            if state[start]:
                continue
            path: list[int] = []
            stack: list[tuple[int, int]] = [(start, 0)]
            while stack:
                index, next_parent = stack.pop()
                if next_parent == 0:
                    state[index] = 1
                    path.append(index)
                parents = self._specs[index].parents
                if next_parent < len(parents):
                    stack.append((index, next_parent + 1))
                    parent = parents[next_parent]
                    if state[parent] == 1:
                        cycle = [*path[path.index(parent):], parent]
                        names = " -> ".join(
                            f"{i} ({self._specs[i].name})" for i in reversed(cycle)
                        )
                        raise WorkflowCycleError(
                            f"workflow {self.name or '(unnamed)'} has a cycle in depends_on: "
                            f"{names}; a node cannot wait for itself, directly or not: "
                            "remove one of these dependencies"
                        )
                    if state[parent] == 0:
                        stack.append((parent, 0))
                else:
                    state[index] = 2
                    path.pop()

    @property
    def jobs(self) -> list[EnqueueJob]:
        return [spec.job for spec in self._specs]

    def insert(self, workflow_id: str, jobs: Sequence[JobInsert]) -> WorkflowInsert:
        """The backend's form, once the jobs were encoded (in node order)."""
        tag = f"{TAG_PREFIX}{workflow_id}"
        ready: list[JobInsert] = []
        for spec, job in zip(self._specs, jobs, strict=True):
            tags = tuple(job.tags) if tag in job.tags else (*job.tags, tag)
            if spec.parents:
                job = replace(job, run_at=PENDING_RUN_AT, delay=0.0, tags=tags)
            else:
                job = replace(job, tags=tags)
            ready.append(job)
        return WorkflowInsert(
            id=workflow_id, name=self.name, jobs=ready,
            nodes=[NodeInsert(spec.name, spec.parents, spec.runs_when, spec.inputs)
                   for spec in self._specs],
        )


@dataclass(frozen=True, slots=True)
class WorkflowHandle:
    """A stored workflow: its id (for `conveyor workflow show ID`) and its jobs, in the
    order they were added."""

    id: str
    jobs: list[Job[Any]]


def new_workflow_id() -> str:
    return uuid.uuid4().hex


# -- the usual shapes ------------------------------------------------------------------
def chain(*jobs: EnqueueJob, name: str = "chain") -> Workflow:
    """Each job after the first receives the one before's result as its first argument
    (prepare them with `task.prepare_partial(...)`); a failure cancels the rest."""
    wf = Workflow(name)
    previous: Node | None = None
    for job in jobs:
        if previous is None:
            previous = wf.add(job)
        else:
            previous = wf.add(job, depends_on=[previous], inputs="previous")
    return wf


def group(*jobs: EnqueueJob, name: str = "group") -> Workflow:
    """Jobs that run side by side (fan-out), inserted together."""
    wf = Workflow(name)
    for job in jobs:
        wf.add(job)
    return wf


def chord(header: Sequence[EnqueueJob], callback: EnqueueJob, *, name: str = "chord",
          runs_when: RunsWhen = "succeeded") -> Workflow:
    """Fan-in: `callback` runs once, after every job of `header`, with the list of
    their results in order as its first argument (`[]` over an empty header)."""
    wf = Workflow(name)
    nodes = [wf.add(job) for job in header]
    wf.add(callback, depends_on=nodes, inputs="all", runs_when=runs_when, name="callback")
    return wf


def batch(
    jobs: Sequence[EnqueueJob],
    *,
    on_success: EnqueueJob | None = None,
    on_failure: EnqueueJob | None = None,
    on_complete: EnqueueJob | None = None,
    name: str = "batch",
) -> Workflow:
    """Jobs with callbacks, each receiving the list of results (None where a job did not
    succeed): `on_success` when all succeeded, `on_failure` when all finished and one
    did not, `on_complete` when all finished. `conveyor workflow show` counts progress."""
    wf = Workflow(name)
    nodes = [wf.add(job) for job in jobs]
    callbacks: list[tuple[EnqueueJob | None, RunsWhen, str]] = [
        (on_success, "succeeded", "on_success"), (on_failure, "failed", "on_failure"),
        (on_complete, "finished", "on_complete"),
    ]
    for callback, when, label in callbacks:
        if callback is not None:
            wf.add(callback, depends_on=nodes, runs_when=when, inputs="all", name=label)
    return wf


# -- storing ---------------------------------------------------------------------------
class _Encoder(Protocol):
    def __call__(self, jobs: Sequence[EnqueueJob]) -> list[JobInsert]: ...


def store_workflow(
    workflow: Workflow,
    jobs: Sequence[EnqueueJob],
    *,
    backend: WorkflowStore,
    encode: _Encoder,
    connection: Any = None,
    workflow_id: str | None = None,
) -> tuple[str, list[JobInsert], list[InsertResult]]:
    """Insert `jobs` (the workflow's, as the enqueue middleware left them) as one graph."""
    if len(jobs) != len(workflow):
        raise InvalidOptionError(
            f"an enqueue middleware turned the workflow's {len(workflow)} jobs into "
            f"{len(jobs)}: a workflow's middleware may change jobs, not add or drop them"
        )
    workflow_id = workflow_id or new_workflow_id()
    insert = workflow.insert(workflow_id, encode(jobs))
    results = backend.workflow_insert(insert, connection=connection)
    return workflow_id, list(insert.jobs), results


# -- the worker side: parents' results as arguments -------------------------------------
def in_workflow(tags: Sequence[str]) -> bool:
    return any(tag.startswith(TAG_PREFIX) for tag in tags)


class WorkflowInputs(Middleware):
    """Before a workflow node's attempt, put its parents' results before its arguments
    (a chain link's one result, a chord callback's list). Read at each attempt, so a
    retry or a rescue sees the same stored results."""

    def __init__(self, inputs: Callable[[int], list[Any] | None]) -> None:
        self._inputs = inputs

    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
        if not in_workflow(attempt.tags):
            return call_next()
        given = self._inputs(attempt.id)
        if given is None:
            return call_next()
        return call_next(replace(attempt, args=(*given, *attempt.args)))


__all__ = [
    "Node",
    "Workflow",
    "WorkflowHandle",
    "WorkflowInputs",
    "batch",
    "chain",
    "chord",
    "group",
    "in_workflow",
    "new_workflow_id",
    "store_workflow",
]
