"""`conveyor slo`: each objective's SLI, error budget left and burn rates; `slo rules`.

    conveyor slo myapp.tasks:app               # the table (also: -A APP, $CONVEYOR_APP)
    conveyor slo show myapp.tasks:app --json
    conveyor slo rules myapp.tasks:app > conveyor-slo.rules.yml
"""

from __future__ import annotations

import click
from rich.table import Table

from conveyor.cli.common import CliError, app_options, console, echo_json, open_app
from conveyor.incidents.detectors import prometheus_rules as detector_rules
from conveyor.observability.rules import prometheus_rules
from conveyor.observability.slo import SLIStatus, format_window

SHOWN_WINDOWS = (300.0, 3600.0, 6 * 3600.0, 3 * 86400.0)
"""Burn-rate columns of the table: 5m, 1h, 6h, 3d."""


def _burn_cell(rate: float, threshold: float | None) -> str:
    text = f"{rate:.2f}x"
    if threshold is not None and rate > threshold:
        return f"[bold red]{text}[/]"
    if rate > 1.0:
        return f"[yellow]{text}[/]"
    return text


def show_slos(app_argument: str | None, app_option: str | None, as_json: bool) -> None:
    app, path = open_app(app_argument, app_option)
    if not app.objectives:
        raise CliError(
            f"{path} declares no SLO: add one, e.g. app.slo('emails', task=send_email, "
            "success=0.999, wait_p99=5.0)"
        )
    statuses = app.insights.slo()
    if as_json:
        echo_json({"objectives": [s.to_json() for s in statuses]})
        return
    out = console()
    table = Table(title="Service level objectives", title_justify="left")
    for column, justify in (("objective", "left"), ("sli", "left"), ("target", "right"),
                            ("window", "right"), ("SLI", "right"), ("budget left", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for window in SHOWN_WINDOWS:
        table.add_column(f"burn {format_window(window)}", justify="right")
    table.add_column("alert")
    for status in statuses:
        table.add_row(*_row(status))
    out.print(table)
    out.print("[dim]burn 1x spends the budget exactly over the window; pages fire at 14.4x "
              "over 1h and 5m, or 6x over 6h and 30m (for a 30-day window)[/]")


def _row(status: SLIStatus) -> list[str]:
    objective = status.objective
    target = f"{status.target:.3%}".rstrip("0").rstrip(".")
    if status.sli == "wait":
        target = f"{target} <= {objective.wait_p99:g}s"
    value = status.sli_value
    budget = status.budget_left
    budget_text = f"{budget:.1%}"
    if budget < 0:
        budget_text = f"[bold red]{budget_text}[/]"
    elif budget < 0.25:
        budget_text = f"[yellow]{budget_text}[/]"
    # A window's cell turns red when it is above the lowest threshold of a rule using it.
    thresholds: dict[float, float] = {}
    for rule in status.rules:
        for window in (rule.rule.long_window, rule.rule.short_window):
            thresholds[window] = min(thresholds.get(window, rule.threshold), rule.threshold)
    firing = sorted({r.rule.severity for r in status.rules if r.firing})
    return [
        objective.name + (f" ({objective.task})" if objective.task else ""),
        status.sli,
        target,
        format_window(objective.window),
        "-" if value is None else f"{value:.4%}",
        budget_text,
        *(_burn_cell(status.burn_rates[w], thresholds.get(w)) for w in SHOWN_WINDOWS),
        ", ".join(f"[bold red]{s}[/]" for s in firing) or "[green]ok[/]",
    ]


class _SloGroup(click.Group):
    """`conveyor slo APP ...` means `conveyor slo show APP ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_SloGroup, invoke_without_command=True)
@click.option(
    "-A", "--app", "app_option", metavar="MODULE:ATTR",
    help="The Conveyor app, e.g. myapp.tasks:app (default: $CONVEYOR_APP).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def slo(ctx: click.Context, app_option: str | None, as_json: bool) -> None:
    """Service level objectives: SLI, error budget left, burn rates (5m/1h/6h/3d)."""
    if ctx.invoked_subcommand is None:
        show_slos(None, app_option, as_json)


@slo.command()
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def show(app_argument: str | None, app_option: str | None, as_json: bool) -> None:
    """Each objective of APP: SLI over its window, budget left, burn rates, alerts."""
    show_slos(app_argument, app_option, as_json)


@slo.command()
@app_options
def rules(app_argument: str | None, app_option: str | None) -> None:
    """Print APP's SLOs as Prometheus recording and alerting rules (YAML), and an alert
    per silent-failure detector (on conveyor_detector_firing)."""
    app, _ = open_app(app_argument, app_option)
    # The SLO groups, then one group of alerts on the silent-failure detectors.
    slo_rules = prometheus_rules(list(app.objectives.values())) if app.objectives else "groups:\n"
    click.echo(slo_rules + detector_rules(), nl=False)
