"""`conveyor spool status | list | flush [APP]`: the jobs this host keeps while the
database does not answer (see docs/spool.md)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from conveyor.cli.common import CliError, app_options, console, echo_json, open_app
from conveyor.errors import BackendError
from conveyor.spool import SpoolStatus


def _status_json(status: SpoolStatus | None, path: str) -> dict[str, Any]:
    if status is None:
        return {"path": path, "depth": 0, "oldest_age_seconds": None, "exists": False}
    return {"path": status.path, "depth": status.depth,
            "oldest_age_seconds": status.oldest_age, "exists": True}


@click.group()
def spool() -> None:
    """The local spool: jobs kept on this host while the database did not answer."""


@spool.command("status")
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def spool_status(app_argument: str | None, app_option: str | None, as_json: bool) -> None:
    """How many jobs wait in the spool, and for how long the oldest has."""
    app, _ = open_app(app_argument, app_option)
    status = app.spool_status()
    data = _status_json(status, app.spool_path)
    if as_json:
        echo_json(data)
        return
    age = data["oldest_age_seconds"]
    console().print(
        f"spool {data['path']}: {data['depth']} job(s) waiting"
        + (f", the oldest for {age:.0f}s" if age is not None else "")
    )


@spool.command("list")
@app_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def spool_list(
    app_argument: str | None, app_option: str | None, limit: int, as_json: bool
) -> None:
    """The oldest spooled jobs, in the order they will be forwarded."""
    app, _ = open_app(app_argument, app_option)
    if app.spool_status() is None:
        jobs = []
    else:
        jobs = app.spool.peek(limit)
    rows = [
        {"seq": s.seq, "client_id": s.job.client_id, "task": s.job.task, "queue": s.job.queue,
         "idempotency_key": s.job.idempotency_key, "spooled_at": s.spooled_at}
        for s in jobs
    ]
    if as_json:
        echo_json(rows)
        return
    table = Table("seq", "client id", "task", "queue", "idempotency key")
    for r in rows:
        table.add_row(str(r["seq"]), str(r["client_id"]), str(r["task"]), str(r["queue"]),
                      str(r["idempotency_key"] or ""))
    console().print(table)


@spool.command("flush")
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def spool_flush(app_argument: str | None, app_option: str | None, as_json: bool) -> None:
    """Forward every spooled job now; exit 1 if the database does not answer."""
    app, _ = open_app(app_argument, app_option)
    if app.spool_status() is None:
        forwarded = 0
    else:
        try:
            forwarded = app.flush_spool()
        except BackendError as exc:
            left = app.spool_status()
            raise CliError(
                f"the database did not take the spooled jobs ({exc}); "
                f"{left.depth if left else 0} job(s) stay in the spool: try again later"
            ) from exc
    if as_json:
        echo_json({"forwarded": forwarded})
        return
    console().print(f"forwarded {forwarded} job(s)")
