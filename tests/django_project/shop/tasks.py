"""Django tasks, written against Django's API only."""

from typing import Any

try:
    from django.tasks import TaskContext, task
except ImportError:
    from django_tasks import TaskContext, task

from shop.models import Order


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="mail", priority=50)
def send_receipt(order_id: int) -> str:
    Order.objects.filter(id=order_id).update(receipt_sent=True)
    return f"receipt for {order_id}"


@task(takes_context=True)
def who_am_i(context: TaskContext, label: str) -> dict[str, Any]:
    return {"id": context.task_result.id, "attempt": context.attempt, "label": label}


@task()
def broken() -> None:
    raise ValueError("the payment provider said no")


@task()
async def shout(word: str) -> str:
    return word.upper()
