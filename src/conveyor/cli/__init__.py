"""The `conveyor` command line.

    conveyor worker myapp.tasks:app -q default,emails -c 16
    conveyor status myapp.tasks:app
    conveyor dlq list | retry | purge
    conveyor jobs show ID | list | cancel ID
    conveyor workflow show ID | list | cancel ID
    conveyor queues pause | resume QUEUE
    conveyor audit [--since 7d --actor NAME --action job.retry]
    conveyor migrate [--dry-run]
    conveyor web myapp.tasks:app [--host 127.0.0.1 --port 8000]
    conveyor tokens create myapp.tasks:app --role operator --name me | list | revoke APP ID
    conveyor slo [show|rules]
    conveyor spool status | list | flush
    conveyor limits list | set NAME --rate 10/s | reset NAME
    conveyor demo
    conveyor grafana-dashboard [APP] > conveyor.json

The app is named by a positional `module:attr`, by `-A/--app`, or by
`$CONVEYOR_APP`. Errors a user can fix are one red `error: ...` line and exit
code 1; every read command has `--json`.
"""

from __future__ import annotations

import click

from conveyor.cli.audit import audit, queues
from conveyor.cli.common import ConveyorGroup
from conveyor.cli.demo import demo
from conveyor.cli.dlq import dlq
from conveyor.cli.grafana import grafana_dashboard
from conveyor.cli.incidents import annotate, doctor, events, incident
from conveyor.cli.jobs import jobs
from conveyor.cli.limits import limits
from conveyor.cli.logs import configure_logging
from conveyor.cli.migrate import migrate
from conveyor.cli.slo import slo
from conveyor.cli.spool import spool
from conveyor.cli.status import status
from conveyor.cli.web import tokens, web
from conveyor.cli.worker import worker
from conveyor.cli.workflow import workflow


@click.group(
    name="conveyor", cls=ConveyorGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(package_name="conveyor", prog_name="conveyor")
def cli() -> None:
    """conveyor: background jobs for Python that fail well.

    New here? Run `conveyor demo`.
    """
    # Warnings (e.g. the SQLite version check) as log lines on stderr; `worker`
    # sets its own level and format.
    configure_logging("warning")


cli.add_command(worker)
cli.add_command(migrate)
cli.add_command(status)
cli.add_command(jobs)
cli.add_command(dlq)
cli.add_command(slo)
cli.add_command(demo)
cli.add_command(web)
cli.add_command(tokens)
cli.add_command(queues)
cli.add_command(audit)
cli.add_command(grafana_dashboard)
cli.add_command(spool)
cli.add_command(workflow)
cli.add_command(limits)
cli.add_command(annotate)
cli.add_command(events)
cli.add_command(incident)
cli.add_command(doctor)


def main() -> None:
    """The `conveyor` console script."""
    cli.main(prog_name="conveyor")


__all__ = ["cli", "main"]
