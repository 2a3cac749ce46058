"""A workflow drawn as a graph: node boxes placed in layers (a node one layer right of
its deepest parent), edges as lines. Server-side SVG: no script, so the dashboard's
Content-Security-Policy holds."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.operations import WorkflowView

BOX_W, BOX_H = 150, 34
GAP_X, GAP_Y = 60, 14
DRAWN_MAX = 400
"""A bigger workflow is shown as counts and a table, not drawn."""


@dataclass(frozen=True, slots=True)
class Box:
    job_id: int
    label: str
    state: str
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Line:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True, slots=True)
class Graph:
    boxes: list[Box]
    lines: list[Line]
    width: int
    height: int


def layout(view: WorkflowView) -> Graph | None:
    """Where each node and edge goes; None when the workflow is too big to draw."""
    if len(view.nodes) > DRAWN_MAX:
        return None
    parents: dict[int, list[int]] = {}
    for edge in view.edges:
        parents.setdefault(edge.child_id, []).append(edge.parent_id)
    known = {node.job_id for node in view.nodes}
    depth: dict[int, int] = {}

    def depth_of(job_id: int) -> int:
        # Iterative: a long chain must not exhaust the recursion limit.
        stack = [job_id]
        while stack:
            current = stack[-1]
            if current in depth:
                stack.pop()
                continue
            todo = [p for p in parents.get(current, []) if p in known and p not in depth]
            if todo:
                stack.extend(todo)
                continue
            depth[current] = 1 + max(
                (depth[p] for p in parents.get(current, []) if p in known), default=-1)
            stack.pop()
        return depth[job_id]

    rows: dict[int, int] = {}
    where: dict[int, tuple[int, int]] = {}
    boxes: list[Box] = []
    for node in view.nodes:
        column = depth_of(node.job_id)
        row = rows.get(column, 0)
        rows[column] = row + 1
        x, y = 10 + column * (BOX_W + GAP_X), 10 + row * (BOX_H + GAP_Y)
        where[node.job_id] = (x, y)
        label = f"{node.job_id} {node.name}"
        boxes.append(Box(node.job_id, label if len(label) <= 20 else label[:19] + "…",
                         view.node_state(node), x, y))
    lines = [
        Line(where[e.parent_id][0] + BOX_W, where[e.parent_id][1] + BOX_H // 2,
             where[e.child_id][0], where[e.child_id][1] + BOX_H // 2)
        for e in view.edges if e.parent_id in where and e.child_id in where
    ]
    width = 20 + (max(depth.values(), default=0) + 1) * (BOX_W + GAP_X)
    height = 20 + max(rows.values(), default=1) * (BOX_H + GAP_Y)
    return Graph(boxes, lines, width, height)
