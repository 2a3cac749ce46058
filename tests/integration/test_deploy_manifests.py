"""The Kubernetes manifests in deploy/ say what they mean.

They cannot run here (no cluster), so what can be checked is checked for real:
both overlays render with `kubectl kustomize` (offline), every conveyor command
line in them parses with the real CLI, each pod's termination grace covers the
worker's, selectors, the NetworkPolicy and the disruption budget name the pods
that exist, and the autoscaler's query runs on a migrated PostgreSQL and counts
exactly the work it claims to count.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from conveyor import Conveyor
from conveyor.backends.base import FetchParams
from conveyor.cli import cli

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
DEPLOY = KUBERNETES / "base"
OVERLAYS = ["postgres-fleet", "sqlite-single-node"]


def load(name: str) -> Any:
    path = DEPLOY / name
    if not path.exists():
        path = KUBERNETES / "overlays" / "postgres-fleet" / name
    return next(doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def render(overlay: str) -> list[Any]:
    """`kubectl kustomize` (or `kustomize build`) of an overlay, offline, as objects."""
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if kubectl:
        command = [kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)]
    elif kustomize:
        command = [kustomize, "build", str(KUBERNETES / "overlays" / overlay)]
    else:
        message = "kubectl or kustomize is needed to render the overlays"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


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


@pytest.mark.parametrize(
    "name", ["worker.yaml", "migrate.yaml", "autoscale.yaml", "web.yaml", "disruption.yaml"]
)
def test_each_manifest_is_one_well_formed_kubernetes_object(name: str) -> None:
    manifest = load(name)  # the first object of the file
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


def by_kind(objects: list[Any]) -> dict[tuple[str, str], Any]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def pod_labels(objects: list[Any]) -> dict[str, dict[str, str]]:
    """Pod template labels of every workload, by workload name."""
    return {
        o["metadata"]["name"]: o["spec"]["template"].get("metadata", {}).get("labels", {})
        for o in objects if o["kind"] in ("Deployment", "Job")
    }


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_its_pods_stop_within_their_grace(overlay: str) -> None:
    objects = render(overlay)
    kinds = by_kind(objects)
    assert ("Deployment", "conveyor-worker") in kinds
    assert ("PodDisruptionBudget", "conveyor-worker") in kinds
    for workload in (o for o in objects if o["kind"] == "Deployment"):
        spec = pod_spec(workload)
        for container in spec["containers"]:
            ctx = parse_conveyor_args(container["args"])  # every command line parses
            if ctx.info_name == "worker":
                # The kubelet's SIGKILL must not cut the worker's release short.
                assert spec["terminationGracePeriodSeconds"] >= ctx.params["grace"] + 10
            env = {e["name"]: e for e in container["env"]}
            assert "CONVEYOR_URL" in env
    # Selectors name pods that exist.
    labels = pod_labels(objects)
    for obj in objects:
        selector = None
        if obj["kind"] in ("PodDisruptionBudget", "PodMonitor"):
            selector = obj["spec"]["selector"]
        elif obj["kind"] == "Service":
            selector = {"matchLabels": obj["spec"]["selector"]}
        if selector is not None:
            assert any(matches(selector, lab) for lab in labels.values()), obj["metadata"]
    for workload in (o for o in objects if o["kind"] == "Deployment"):
        assert matches(workload["spec"]["selector"], labels[workload["metadata"]["name"]])


def test_the_sqlite_overlay_is_one_pod_on_one_volume() -> None:
    kinds = by_kind(render("sqlite-single-node"))
    worker = kinds[("Deployment", "conveyor-worker")]
    assert worker["spec"]["replicas"] == 1 and worker["spec"]["strategy"]["type"] == "Recreate"
    assert ("Job", "conveyor-migrate") not in kinds  # SQLite migrates on first use
    assert ("ScaledObject", "conveyor-worker") not in kinds
    claim = pod_spec(worker)["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in kinds
    for container in pod_spec(worker)["containers"]:
        (url,) = [e for e in container["env"] if e["name"] == "CONVEYOR_URL"]
        assert url == {"name": "CONVEYOR_URL", "value": "sqlite:////data/conveyor.db"}
        assert {"mountPath": "/data", "name": "data"} in container["volumeMounts"]


def test_only_conveyor_pods_reach_postgresql_by_label() -> None:
    objects = render("postgres-fleet")
    kinds = by_kind(objects)
    policy = kinds[("NetworkPolicy", "conveyor-postgresql")]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    peers = rule["from"]
    assert all("ipBlock" not in peer for peer in peers)  # identity, never addresses
    labels = pod_labels(objects)
    database_clients = {
        name for name, obj in ((o["metadata"]["name"], o) for o in objects
                               if o["kind"] in ("Deployment", "Job"))
        if any(e["name"] == "CONVEYOR_URL" for c in pod_spec(obj)["containers"]
               for e in c["env"])
    }
    assert database_clients == {"conveyor-worker", "conveyor-web", "conveyor-migrate"}
    same_namespace = [p["podSelector"] for p in peers if "namespaceSelector" not in p]
    allowed = {name for name, lab in labels.items()
               if any(matches(sel, lab) for sel in same_namespace)}
    assert allowed == database_clients
    # No pod but those: a pod of another app is refused.
    assert not any(matches(sel, {"app.kubernetes.io/name": "billing"}) for sel in same_namespace)
    (keda,) = [p for p in peers if "namespaceSelector" in p]  # the autoscaler's query
    assert keda["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}
    assert ("ScaledObject", "conveyor-worker") in kinds


def test_the_dockerfile_is_multi_stage_pinned_and_not_root() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in bases:
        if image.split(" ")[0] in {"builder"}:
            continue
        _, _, tag = image.partition(":")
        assert "@sha256:" in image or re.fullmatch(r"\d+\.\d+\.\d+-[a-z0-9-]+", tag), image
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
