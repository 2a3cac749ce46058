"""`manage.py conveyor worker|status|migrate`: conveyor's commands on the TASKS backend."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conveyor.contrib.django._compat import task_backends
from conveyor.contrib.django.backend import ConveyorBackend


class Command(BaseCommand):
    help = "Run a conveyor worker for Django tasks, show queue status, or migrate its tables."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["worker", "status", "migrate"])
        parser.add_argument(
            "--backend", default="default", help="The TASKS alias (default: default)."
        )
        parser.add_argument(
            "--queues", default="",
            help="Comma-separated queues to serve (default: the backend's QUEUES).",
        )
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument("--burst", action="store_true", help="Exit once the queues are empty.")
        parser.add_argument("--grace", type=float, default=30.0,
                            help="Seconds running tasks get to finish at shutdown.")
        parser.add_argument("--json", action="store_true", help="status: print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["backend"]
        backend = task_backends[alias]
        if not isinstance(backend, ConveyorBackend):
            raise CommandError(
                f"TASKS[{alias!r}] uses {type(backend).__name__}, not "
                "conveyor.contrib.django.ConveyorBackend"
            )
        app = backend.conveyor
        action = options["action"]
        if action == "migrate":
            applied = app.migrate()
            for version, _ in applied:
                self.stdout.write(f"applied conveyor migration {version:04d}")
            self.stdout.write("conveyor schema is up to date")
        elif action == "status":
            stats: list[dict[str, Any]] = [
                {"queue": s.queue, "counts": {str(k): v for k, v in s.counts.items()},
                 "oldest_available_age": s.oldest_available_age}
                for s in app.backend.queue_stats()
            ]
            if options["json"]:
                self.stdout.write(json.dumps(stats))
            else:
                for row in stats:
                    counts = ", ".join(f"{k} {v}" for k, v in sorted(row["counts"].items()))
                    self.stdout.write(f"{row['queue']}: {counts or 'empty'}")
        else:
            queues = [q for q in options["queues"].split(",") if q] or sorted(backend.queues)
            code = app.run_worker(
                queues=queues, concurrency=options["concurrency"], burst=options["burst"],
                grace=options["grace"], pool="thread",
            )
            if code:
                raise CommandError(f"worker exited with status {code}")
