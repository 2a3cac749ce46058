"""`conveyor migrate`: bring the schema up to date, or print the SQL that would run."""

from __future__ import annotations

import click

from conveyor.backends.base import SCHEMA_VERSION
from conveyor.cli.common import app_options, open_app


@click.command()
@app_options
@click.option(
    "--dry-run", is_flag=True,
    help="Print the SQL of the pending migrations instead of running it "
    "(for teams that apply schema changes with their own tool).",
)
def migrate(app_argument: str | None, app_option: str | None, dry_run: bool) -> None:
    """Create or upgrade the job tables of APP's database.

    With --dry-run, stdout is plain SQL, ready for a file or another migration tool.
    """
    app, _ = open_app(app_argument, app_option)
    pending = app.migrate(dry_run=dry_run)
    if dry_run:
        if not pending:
            click.echo(f"-- nothing to migrate: the schema is at version {SCHEMA_VERSION}")
        for version, sql in pending:
            click.echo(f"-- conveyor migration {version:04d}")
            click.echo(sql.rstrip())
            click.echo()
        return
    if not pending:
        click.echo(f"the schema is up to date (version {SCHEMA_VERSION})")
        return
    for version, _sql in pending:
        click.echo(f"applied migration {version:04d}")
    click.echo(f"the schema is at version {SCHEMA_VERSION}")
