"""`conveyor web` (the HTTP API and dashboard) and `conveyor tokens` (their API tokens)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from conveyor.backends.base import ROLES
from conveyor.cli.common import CliError, app_options, console, echo_json, open_app, operations


def _require_web() -> None:
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise CliError(
            f"the web extra is not installed ({exc.name} is missing): "
            "install conveyor's web extra (from a clone of conveyor: pip install -e '.[web]')"
        ) from None


@click.command()
@app_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any address but loopback needs authentication.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--auth/--no-auth", default=True, show_default=True,
              help="Require API tokens. --no-auth makes every caller an admin, so it is "
              "refused on any address but loopback.")
@click.option("--rate-limit", type=click.FloatRange(min=0.01), default=20.0, show_default=True,
              help="Requests a second per token, on average.")
@click.option("--burst", type=click.IntRange(min=1), default=100, show_default=True,
              help="Requests a token may make at once.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="With --no-auth, another Host name to answer besides the loopback ones.")
@click.option("--behind-proxy", "proxy_ips", metavar="IPS",
              help="Trust X-Forwarded-Proto/For from these proxy addresses (comma-separated), "
              "so a TLS-terminating proxy's https reaches the cookies and origin checks.")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), metavar="PORT",
              help="Also serve Prometheus metrics at http://METRICS-HOST:PORT/metrics.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="Address the metrics endpoint binds to.")
def web(
    *,
    app_argument: str | None,
    app_option: str | None,
    host: str,
    port: int,
    auth: bool,
    rate_limit: float,
    burst: int,
    allowed_hosts: tuple[str, ...],
    proxy_ips: str | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Serve the HTTP API (/api/v1) and the dashboard (/) of APP."""
    _require_web()
    import uvicorn

    from conveyor.web import create_app
    from conveyor.web.app import is_loopback

    if not auth and not is_loopback(host):
        raise CliError(
            f"refusing to listen on {host} without authentication: anyone who can reach it "
            "could run and delete jobs. Drop --no-auth (and create a token with `conveyor "
            "tokens create --role operator --name me`), or listen on 127.0.0.1"
        )
    conveyor, _ = open_app(app_argument, app_option)
    conveyor.backend.schema_check()
    asgi = create_app(conveyor, auth=auth, rate_limit=rate_limit, rate_burst=burst,
                      allowed_hosts=allowed_hosts)
    out = console()
    shown = f"[{host}]" if ":" in host else host
    out.print(f"conveyor web on http://{shown}:{port}/  (API: /api/v1, "
              f"OpenAPI: /api/v1/openapi.json)")
    if auth:
        live = [t for t in conveyor.operations.list_tokens()
                if t.revoked_at is None and not t.expired]
        if not live:
            out.print("[yellow]no live API token exists (none yet, or all revoked or expired): "
                      "create one with `conveyor tokens create --role admin --name me`[/]")
    else:
        out.print("[yellow]authentication is off: every local user can act on the jobs[/]")
    metrics = None
    if metrics_port is not None:
        from conveyor.incidents.metrics import DetectorCollector
        from conveyor.observability.prometheus import JobMetrics, serve_metrics

        job_metrics = JobMetrics(conveyor)
        job_metrics.registry.register(DetectorCollector(conveyor.incidents.detect))
        metrics = serve_metrics(job_metrics, metrics_port, metrics_host)
        out.print(f"metrics on {metrics.url}")
    try:
        uvicorn.run(asgi, host=host, port=port, log_level="warning", server_header=False,
                    proxy_headers=proxy_ips is not None, forwarded_allow_ips=proxy_ips or None)
    finally:
        if metrics is not None:
            metrics.close()


@click.group()
def tokens() -> None:
    """API tokens for `conveyor web`: create, list, revoke."""


@tokens.command()
@app_options
@click.option("--name", required=True, help="Who or what uses it, e.g. billing-service.")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="viewer (read), enqueuer (enqueue only), operator (read, enqueue, retry, "
              "cancel, pause), admin (everything, tokens too).")
@click.option("--tasks", default="", metavar="A,B",
              help="enqueuer only: the only tasks it may enqueue.")
@click.option("--queues", default="", metavar="Q1,Q2",
              help="enqueuer only: the only queues it may enqueue into.")
@click.option("--expires-in", "expires_in", default=None, metavar="DURATION",
              help="Stop working after this long, e.g. 12h, 30d, 2w (default: only when "
              "revoked).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(
    *,
    app_argument: str | None,
    app_option: str | None,
    name: str,
    role: str,
    tasks: str,
    queues: str,
    expires_in: str | None,
    as_json: bool,
) -> None:
    """Create a token. It is printed once and stored only as a hash."""
    from conveyor.web.auth import parse_duration
    from conveyor.web.views import iso

    lifetime = None if expires_in is None else parse_duration(expires_in)
    conveyor, _ = open_app(app_argument, app_option)
    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    queue_list = [q.strip() for q in queues.split(",") if q.strip()]
    ops, actor, source = operations(conveyor)
    token, stored = ops.create_token(
        name=name, role=role, tasks=task_list, queues=queue_list, expires_in=lifetime,
        actor=actor, source=source,
    )
    token_id = stored.id
    expires_at = iso(stored.expires_at) if stored.expires_at is not None else None
    if as_json:
        echo_json({"id": token_id, "name": name, "role": role, "tasks": task_list,
                   "queues": queue_list, "expires_at": expires_at, "token": token})
        return
    click.echo(token)
    until = f", expires {expires_at}" if expires_at else ""
    click.echo(
        f"token {token_id} ({name}, {role}{until}) created: copy it now, it is not shown again",
        err=True,
    )


@tokens.command(name="list")
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_tokens(*, app_argument: str | None, app_option: str | None, as_json: bool) -> None:
    """Tokens (never the tokens themselves), with when each was last used."""
    from conveyor.web.views import iso

    conveyor, _ = open_app(app_argument, app_option)
    found = conveyor.operations.list_tokens()
    rows: list[dict[str, Any]] = [
        {"id": t.id, "name": t.name, "role": t.role, "tasks": list(t.tasks),
         "queues": list(t.queues), "created_at": iso(t.created_at),
         "last_used_at": iso(t.last_used_at), "revoked_at": iso(t.revoked_at),
         "expires_at": iso(t.expires_at), "expired": t.expired}
        for t in found
    ]
    if as_json:
        echo_json(rows)
        return
    out = console()
    if not rows:
        out.print("no tokens: create one with `conveyor tokens create --role viewer --name me`")
        return
    table = Table(title="API tokens", title_justify="left")
    for column in ("id", "name", "role", "limited to", "created", "last used", "revoked",
                   "expires"):
        table.add_column(column)
    for row in rows:
        limits = ", ".join([*(f"task {t}" for t in row["tasks"]),
                            *(f"queue {q}" for q in row["queues"])])
        table.add_row(
            str(row["id"]), str(row["name"]), str(row["role"]), limits or "-",
            str(row["created_at"]), str(row["last_used_at"] or "-"),
            str(row["revoked_at"] or "-"),
            (f"{row['expires_at']} (expired)" if row["expired"] else
             str(row["expires_at"] or "never")),
        )
    out.print(table)


@tokens.command()
@click.argument("targets", nargs=-1, metavar="[APP] TOKEN_ID")
@click.option(
    "-A", "--app", "app_option", metavar="MODULE:ATTR",
    help="The Conveyor app, e.g. myapp.tasks:app (default: $CONVEYOR_APP).",
)
def revoke(*, targets: tuple[str, ...], app_option: str | None) -> None:
    """Revoke token TOKEN_ID of APP at once (APP first, as in every other command)."""
    app_argument, token_id = _revoke_arguments(targets)
    conveyor, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(conveyor)
    if not ops.revoke_token(token_id, actor=actor, source=source):
        raise CliError(f"no live token {token_id}: see `conveyor tokens list`")
    click.echo(f"token {token_id} revoked")


def _revoke_arguments(targets: tuple[str, ...]) -> tuple[str | None, int]:
    """`[APP] TOKEN_ID`; the former `TOKEN_ID APP` still works, with a notice."""
    def token(text: str) -> int | None:
        return int(text) if text.isdigit() and int(text) >= 1 else None

    if len(targets) == 1 and token(targets[0]) is not None:
        return None, int(targets[0])
    if len(targets) == 2:
        first, second = targets
        if token(second) is not None:
            return first, int(second)
        if token(first) is not None:
            click.echo(
                f"note: `tokens revoke TOKEN_ID APP` is deprecated: write "
                f"`conveyor tokens revoke {second} {first}` (the app first, as everywhere)",
                err=True,
            )
            return second, int(first)
    raise CliError(
        "usage: conveyor tokens revoke [APP] TOKEN_ID (a token id is a number >= 1; see "
        "`conveyor tokens list APP`)"
    )

