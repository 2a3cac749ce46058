"""`conveyor worker`: run jobs until SIGTERM (or, with --burst, until the queues are empty)."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from collections.abc import Sequence

import click

from conveyor.app import Conveyor
from conveyor.cli.common import app_options, open_app
from conveyor.cli.logs import LEVELS, configure_logging
from conveyor.observability.logs import log_job_events
from conveyor.observability.prometheus import JobMetrics, serve_metrics

log = logging.getLogger("conveyor.worker")


def split_queues(values: tuple[str, ...]) -> list[str]:
    """`-q a,b -q c` -> ['a', 'b', 'c'], in order, each once."""
    queues: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name and name not in queues:
                queues.append(name)
    return queues


@click.command()
@app_options
@click.option(
    "-q", "--queues", "queues", multiple=True, metavar="A,B",
    help="Queues to serve, most preferred first (comma list, repeatable). Default: the app's.",
)
@click.option(
    "-c", "--concurrency", type=click.IntRange(min=1), default=8, show_default=True, metavar="N",
    help="Jobs run at the same time.",
)
@click.option(
    "--pool", type=click.Choice(["thread", "process"]), default="thread", show_default=True,
    help="Run attempts in threads, or in child processes (hard timeouts, CPU-bound work).",
)
@click.option(
    "--prefetch", type=click.IntRange(min=0), metavar="N",
    help="Jobs fetched ahead of free slots, so a freed slot starts at once. "
    "Default: adaptive, about 50 ms of work.",
)
@click.option("--burst", is_flag=True, help="Exit 0 once the queues are empty.")
@click.option(
    "--lease", type=click.FloatRange(min=0.1), metavar="SECONDS",
    help="How long a fetched job stays ours without a heartbeat. Default: the app's.",
)
@click.option(
    "--poll-interval", type=click.FloatRange(min=0.001), metavar="SECONDS",
    help="Longest wait between two looks for work. Default: the app's.",
)
@click.option(
    "--grace", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
    help="On SIGTERM, how long running jobs may finish before they are released.",
)
@click.option(
    "--max-jobs-per-child", type=click.IntRange(min=1), metavar="N",
    help="With --pool process: replace a child after this many jobs.",
)
@click.option(
    "--max-memory-per-child", type=click.FloatRange(min=0, min_open=True), metavar="MB",
    help="With --pool process: replace a child once its resident memory passes this.",
)
@click.option(
    "--log-level", type=click.Choice(LEVELS, case_sensitive=False), default="info",
    show_default=True,
)
@click.option("--log-json", is_flag=True, help="Log one JSON object per line (to stderr).")
@click.option(
    "--metrics-port", type=click.IntRange(min=0, max=65535), metavar="PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
    help="Address the metrics endpoint binds to (0.0.0.0 to let another host scrape it).",
)
def worker(
    *,
    app_argument: str | None,
    app_option: str | None,
    queues: tuple[str, ...],
    concurrency: int,
    pool: str,
    prefetch: int | None,
    burst: bool,
    lease: float | None,
    poll_interval: float | None,
    grace: float,
    max_jobs_per_child: int | None,
    max_memory_per_child: float | None,
    log_level: str,
    log_json: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run jobs of APP (module:attr, e.g. myapp.tasks:app).

    SIGTERM or Ctrl-C stops fetching, lets running jobs finish for up to
    --grace seconds, gives back what is left, and exits 0. A second signal
    skips the grace period. SIGUSR1 prints every thread's stack to stderr (the
    worker runs on), to see where a worker that looks stuck is waiting.
    """
    configure_logging(log_level, json_lines=log_json)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    app, path = open_app(app_argument, app_option)
    runner = app.worker(
        queues=split_queues(queues) or None,
        concurrency=concurrency,
        pool=pool,
        burst=burst,
        grace=grace,
        app_path=path,
        lease=lease,
        poll_interval=poll_interval,
        max_jobs_per_child=max_jobs_per_child,
        prefetch=prefetch,
        max_memory_per_child=max_memory_per_child,
    )
    warn_unserved_queues(app, runner.queues)
    log_job_events(app)
    server = None
    if metrics_port is not None:
        metrics = JobMetrics(app)
        metrics.watch_worker(runner)
        from conveyor.incidents.metrics import DetectorCollector

        metrics.registry.register(DetectorCollector(app.incidents.detect))
        server = serve_metrics(metrics, metrics_port, metrics_host)
        log.info("metrics at %s", server.url)
    try:
        code = runner.run()
    finally:
        if server is not None:
            server.close()
    sys.exit(code)


def unserved_queues(app: Conveyor, served: Sequence[str]) -> dict[str, list[str]]:
    """Queues the app's tasks enqueue to by default that `served` leaves out, with their tasks."""
    found: dict[str, list[str]] = {}
    for name, task in sorted(app.tasks.items()):
        queue = task.options.queue or app.default_queue
        if queue not in served:
            found.setdefault(queue, []).append(name)
    return found


def warn_unserved_queues(app: Conveyor, served: Sequence[str]) -> None:
    """Say at start which queues this worker serves, and which declared ones it does not
    (their jobs would wait for another worker, silently, if none serves them)."""
    log.info("serving queue(s): %s", ", ".join(served))
    missing = unserved_queues(app, served)
    if missing:
        listed = "; ".join(f"{queue} ({', '.join(tasks)})" for queue, tasks in missing.items())
        log.warning(
            "not serving queue(s) that tasks of this app use: %s. Their jobs wait for a worker "
            "that serves them: add them with -q %s if this one should",
            listed, ",".join([*served, *missing]),
        )

