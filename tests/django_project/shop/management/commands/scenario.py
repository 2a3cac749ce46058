"""`manage.py scenario enqueue|read IDS...`: what a Django app does with tasks, as JSON."""

import asyncio
import json
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from shop.models import Order
from shop.tasks import add, broken, send_receipt, shout, who_am_i

try:
    from django.tasks import default_task_backend
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:
    from django_tasks import default_task_backend
    from django_tasks.exceptions import TaskResultDoesNotExist


class Rollback(Exception):
    pass


class Command(BaseCommand):
    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("step", choices=["enqueue", "read"])
        parser.add_argument("ids", nargs="*")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["step"] == "enqueue":
            out = self.enqueue()
        else:
            out = self.read(options["ids"])
        self.stdout.write(json.dumps(out))

    def enqueue(self) -> dict[str, Any]:
        ids: dict[str, Any] = {}
        first = add.enqueue(2, 3)
        ids["add"] = first.id
        ids["add_status"] = str(first.status)
        ids["urgent"] = add.using(priority=100, queue_name="mail").enqueue(1, 1).id
        ids["later"] = add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(0, 0).id
        ids["context"] = who_am_i.enqueue("me").id
        ids["broken"] = broken.enqueue().id
        ids["async"] = asyncio.run(shout.aenqueue("hi")).id
        with transaction.atomic():
            order = Order.objects.create(total=10)
            ids["committed"] = send_receipt.enqueue(order.id).id
        ids["order"] = order.id
        try:
            with transaction.atomic():
                gone = Order.objects.create(total=99)
                ids["rolled_back"] = send_receipt.enqueue(gone.id).id
                raise Rollback
        except Rollback:
            pass
        ids["orders"] = Order.objects.count()
        refused: dict[str, str] = {}
        for name, attempt in {
            "set_argument": lambda: add.enqueue({1, 2}, 1),
            "unknown_queue": lambda: add.using(queue_name="nope").enqueue(1, 1),
            "result_not_a_number": lambda: default_task_backend.get_result("nope"),
            "result_never_enqueued": lambda: default_task_backend.get_result("999999"),
        }.items():
            try:
                attempt()
            except Exception as exc:
                refused[name] = type(exc).__name__
        ids["refused"] = refused
        return ids

    def read(self, ids: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for result_id in ids:
            try:
                result = default_task_backend.get_result(result_id)
            except TaskResultDoesNotExist:
                out[result_id] = None
                continue
            out[result_id] = {
                "status": str(result.status),
                "task": result.task.name,
                "queue": result.task.queue_name,
                "priority": result.task.priority,
                "value": result.return_value if result.status == "SUCCESSFUL" else None,
                "errors": [e.exception_class_path for e in result.errors],
                "attempts": result.attempts,
                "run_after": None if result.task.run_after is None else "set",
                "receipts": list(Order.objects.filter(receipt_sent=True).values_list(
                    "id", flat=True)),
            }
        return out
