"""The Kubernetes manifests in deploy/ say what they mean.

They cannot run here (no cluster), so what can be checked is checked for real:
every conveyor command line in them parses with the real CLI, the pod's
termination grace covers the worker's, and the autoscaler's query runs on a
migrated PostgreSQL and counts exactly the work it claims to count.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from conveyor import Conveyor
from conveyor.backends.base import FetchParams
from conveyor.cli import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def pod_spec(manifest: Any) -> Any:
    return manifest["spec"]["template"]["spec"]


def parse_conveyor_args(args: list[str]) -> click.Context:
    """Parse a container's `conveyor <command> ...` with the real CLI (nothing runs)."""
    assert args[0] == "conveyor"
    command = cli.get_command(click.Context(cli), args[1])
    assert command is not None, f"no such conveyor command: {args[1]}"
    return command.make_context(args[1], list(args[2:]))


def test_the_worker_command_line_parses_and_its_grace_fits_the_pods() -> None:
    spec = pod_spec(load("worker.yaml"))
    (container,) = spec["containers"]
    ctx = parse_conveyor_args(container["args"])
    # SIGKILL must not come before the worker has released what it still runs.
    assert spec["terminationGracePeriodSeconds"] >= ctx.params["grace"] + 10
    env = {entry["name"] for entry in container["env"]}
    assert "CONVEYOR_URL" in env


def test_the_migrate_job_runs_conveyor_migrate_with_the_same_database() -> None:
    worker = pod_spec(load("worker.yaml"))["containers"][0]
    (migrate,) = pod_spec(load("migrate.yaml"))["containers"]
    ctx = parse_conveyor_args(migrate["args"])
    assert ctx.info_name == "migrate" and not ctx.params["dry_run"]
    assert migrate["env"] == worker["env"]
    assert migrate["image"] == worker["image"]


def test_the_autoscaler_query_counts_waiting_and_running_work_of_the_workers_queues(
    pg_database: str,
) -> None:
    import psycopg

    from tests.conftest import _pg_truncate

    scaled = load("autoscale.yaml")
    (trigger,) = scaled["spec"]["triggers"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == load("worker.yaml")["metadata"]["name"]
    query = trigger["metadata"]["query"]
    worker_args = pod_spec(load("worker.yaml"))["containers"][0]["args"]
    served = parse_conveyor_args(worker_args).params["queues"]
    named = re.search(r"queue IN \(([^)]*)\)", query)
    assert named is not None
    assert [q.strip(" '") for q in named.group(1).split(",")] == served[0].split(",")

    _pg_truncate(pg_database)
    app = Conveyor(pg_database)
    try:

        @app.task(queue="urgent")
        def urgent() -> None: ...

        @app.task(queue="default")
        def default() -> None: ...

        @app.task(queue="reports")
        def report() -> None: ...

        urgent.enqueue()
        leased = app.backend.job_fetch(FetchParams("k8s-test", ["urgent"], 1, 30.0))
        assert len(leased) == 1  # running: counts
        default.enqueue()
        default.enqueue()  # available: count
        default.using(delay=0.05).enqueue()  # scheduled and due by the query: counts
        default.using(delay=3600).enqueue()  # scheduled for later: not yet work
        default.enqueue().cancel()  # finished: not work
        report.enqueue()  # another queue's backlog: other workers' business
        time.sleep(0.1)
        with psycopg.connect(pg_database) as conn:
            row = conn.execute(query).fetchone()
        assert row is not None and row[0] == 4
    finally:
        app.close()


@pytest.mark.parametrize("name", ["worker.yaml", "migrate.yaml", "autoscale.yaml"])
def test_each_manifest_is_one_well_formed_kubernetes_object(name: str) -> None:
    manifest = load(name)
    assert {"apiVersion", "kind", "metadata", "spec"} <= manifest.keys()
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", manifest["metadata"]["name"])


def test_the_pod_monitor_scrapes_the_port_the_worker_serves_metrics_on() -> None:
    worker = load("worker.yaml")
    (container,) = pod_spec(worker)["containers"]
    ctx = parse_conveyor_args(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == ctx.params["metrics_port"]
    assert ctx.params["metrics_host"] == "0.0.0.0"  # scraped from outside the pod
    monitor = load("monitoring.yaml")
    assert monitor["kind"] == "PodMonitor"
    assert monitor["spec"]["selector"]["matchLabels"] == (
        worker["spec"]["selector"]["matchLabels"]
    )
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
