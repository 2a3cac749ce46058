"""`conveyor limits list | set NAME | reset NAME [APP]`: flow-control limits at run
time (see docs/flow-control.md). A change reaches every worker at its next fetch."""

from __future__ import annotations

import click
from rich.table import Table

from conveyor.backends.base import LimitState
from conveyor.cli.common import app_options, console, echo_json, open_app, operations
from conveyor.limits import format_rate
from conveyor.operations import limit_json


def describe(state: LimitState) -> str:
    parts = []
    if state.rate is not None:
        parts.append(f"{format_rate(state.rate)} burst {state.burst:g}")
    if state.concurrency is not None:
        parts.append(f"{state.concurrency} at once")
    if state.key_rate is not None:
        parts.append(f"{format_rate(state.key_rate)} per key")
    if state.key_concurrency is not None:
        parts.append(f"{state.key_concurrency} at once per key")
    return ", ".join(parts) or "turns only"


@click.group()
def limits() -> None:
    """Flow-control limits: list them, change them at run time."""


@limits.command("list")
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def limits_list(app_argument: str | None, app_option: str | None, as_json: bool) -> None:
    """Every limit: its numbers, what runs and waits under it, and any pause."""
    app, _ = open_app(app_argument, app_option)
    ops, _, _ = operations(app)
    found = ops.list_limits()
    if as_json:
        echo_json([limit_json(s) for s in found])
        return
    table = Table("limit", "bounds", "running", "waiting", "tokens", "set by", "paused")
    for s in found:
        table.add_row(
            s.name, describe(s), str(s.running), f"{s.waiting:,}",
            "-" if s.tokens is None else f"{s.tokens:.1f}",
            "operator" if s.overridden else "code",
            f"{s.paused_for:.0f}s" if s.paused_for > 0 else "-",
        )
    console().print(table)


@limits.command("set")
@click.argument("name")
@app_options
@click.option("--rate", help="Starts per period for the whole limit, e.g. 10/s, 600/m.")
@click.option("--burst", type=float, help="The rate's bucket size (jobs).")
@click.option("--concurrency", type=int, help="Most jobs of the limit running at once.")
@click.option("--key-rate", help="Starts per period for each key, e.g. 1/s.")
@click.option("--key-burst", type=float, help="Each key's bucket size (jobs).")
@click.option("--key-concurrency", type=int, help="Most jobs of one key running at once.")
@click.option("--clear", multiple=True,
              type=click.Choice(["rate", "concurrency", "key_rate", "key_concurrency"]),
              help="Remove a bound (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def limits_set(  # noqa: PLR0917 - one parameter per click option
    name: str, app_argument: str | None, app_option: str | None, rate: str | None,
    burst: float | None, concurrency: int | None, key_rate: str | None,
    key_burst: float | None, key_concurrency: int | None, clear: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change limit NAME now, without a deploy (kept until `conveyor limits reset`)."""
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    state = ops.set_limit(
        name, actor=actor, source=source, rate=rate, burst=burst, concurrency=concurrency,
        key_rate=key_rate, key_burst=key_burst, key_concurrency=key_concurrency, clear=clear,
    )
    if as_json:
        echo_json(limit_json(state))
        return
    click.echo(f"limit {name}: {describe(state)} (workers apply it at their next fetch)")


@limits.command("reset")
@click.argument("name")
@app_options
def limits_reset(name: str, app_argument: str | None, app_option: str | None) -> None:
    """Hand limit NAME back to its declaration in code (applied at the next worker start)."""
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    found = ops.reset_limit(name, actor=actor, source=source)
    click.echo(f"limit {name} follows its declaration again" if found
               else f"no limit named {name}")
