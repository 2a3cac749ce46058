"""`conveyor grafana-dashboard [APP] > conveyor.json`: a Grafana board of the metrics."""

from __future__ import annotations

import json
import os

import click

from conveyor.cli.common import APP_ENV, open_app
from conveyor.observability.grafana import dashboard


@click.command(name="grafana-dashboard")
@click.argument("app_argument", metavar="[APP]", required=False)
@click.option("--title", default="conveyor", show_default=True, help="The dashboard's title.")
def grafana_dashboard(app_argument: str | None, title: str) -> None:
    """Print a Grafana dashboard (JSON) over the metrics of `conveyor worker --metrics-port`.

    With APP (or $CONVEYOR_APP), its SLOs get error-budget and burn-rate panels.
    Import the file in Grafana (Dashboards > New > Import) and pick the Prometheus
    data source.
    """
    objectives = []
    if app_argument or os.environ.get(APP_ENV):
        app, _ = open_app(app_argument, None)
        objectives = list(app.objectives.values())
    click.echo(json.dumps(dashboard(objectives, title=title), indent=2))
