"""What every command shares: finding the app, showing errors, JSON and time formatting.

Errors: a `ConveyorError` raised anywhere under a command becomes one red
``error: ...`` line on stderr and exit code 1 (see `ConveyorGroup`), never a
traceback. A traceback means a bug in conveyor or in the user's own module.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import IO, Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from conveyor.app import Conveyor, load_app
from conveyor.clock import format_duration
from conveyor.errors import ConveyorError
from conveyor.operations import Operations, local_actor

APP_ENV = "CONVEYOR_APP"

BULK = 2**31 - 1
"""A filter limit meaning "every matching job" for bulk actions (retry all, purge)."""

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """An error the user can fix: shown as one red line, exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        console = Console(file=file, stderr=file is None, highlight=False)
        # soft_wrap: one line, however long, so it greps and logs as one line.
        console.print(f"[bold red]error:[/] {escape(self.format_message())}", soft_wrap=True)


class ConveyorGroup(click.Group):
    """A command group that turns conveyor's own errors into `CliError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            raise CliError(str(exc)) from exc


# -- the app ------------------------------------------------------------------------
def app_options(func: F) -> F:
    """Add the optional positional APP and `-A/--app` to a command."""
    func = click.option(
        "-A", "--app", "app_option", metavar="MODULE:ATTR",
        help=f"The Conveyor app, e.g. myapp.tasks:app (default: ${APP_ENV}).",
    )(func)
    return click.argument("app_argument", metavar="[APP]", required=False)(func)


def resolve_app_path(app_argument: str | None, app_option: str | None) -> str:
    """The app path: the positional argument, else -A/--app, else $CONVEYOR_APP."""
    if app_argument and app_option and app_argument != app_option:
        raise CliError(
            f"the app is named twice ({app_argument!r} and -A {app_option!r}): give it once"
        )
    path = app_argument or app_option or os.environ.get(APP_ENV, "").strip()
    if not path:
        ctx = click.get_current_context(silent=True)
        command = ctx.command_path if ctx is not None else "conveyor worker"
        raise CliError(
            f"name your app: {command} myapp.tasks:app (or -A myapp.tasks:app), "
            f"or set {APP_ENV}=myapp.tasks:app"
        )
    return path


def open_app(app_argument: str | None, app_option: str | None) -> tuple[Conveyor, str]:
    """Import the app; its connections are closed when the command ends."""
    path = resolve_app_path(app_argument, app_option)
    try:
        app = load_app(path)
    except ConveyorError as exc:
        raise CliError(str(exc)) from exc
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(app.close)
    return app, path


def operations(app: Conveyor) -> tuple[Operations, str, str]:
    """The app's operations, and who (`cli:<user>@<host>`) and where from (`cli`)
    the audit log records for this command."""
    return app.operations, local_actor("cli"), "cli"


# -- output -------------------------------------------------------------------------
PIPE_WIDTH = 160
"""Width of tables written to a pipe or file (Rich would assume 80 and squeeze them)."""


def console() -> Console:
    """A console on the current stdout (so CliRunner and pipes both capture it)."""
    out = Console(highlight=False)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out.width = PIPE_WIDTH
    return out


def to_jsonable(value: Any) -> Any:
    """Records, enums and datetimes as plain JSON values (times as ISO 8601, UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def echo_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, sort_keys=False))


def format_time(value: datetime | None, now: float) -> str:
    """UTC time with its age: '2025-01-02 10:03:04 (3m 05s ago)', or '-'."""
    if value is None:
        return "-"
    stamp = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    delta = now - value.timestamp()
    relative = f"{format_duration(delta)} ago" if delta >= 0 else f"in {format_duration(-delta)}"
    return f"{stamp} ({relative})"


def short_type(qualified: str) -> str:
    """`builtins.ValueError` -> `ValueError`, `conveyor.errors.RetryAfter` -> `RetryAfter`;
    other modules are kept (they say where the error comes from)."""
    for prefix in ("builtins.", "conveyor.errors."):
        if qualified.startswith(prefix):
            return qualified.removeprefix(prefix)
    return qualified


def one_line(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
