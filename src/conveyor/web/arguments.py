"""The HTTP API's view of argument checking: a `Problem` whose pointer names the culprit.

The checking itself is `conveyor.arguments`, shared with `Task.enqueue`, so
both ways in accept and refuse the same arguments with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.errors import InvalidArgumentsError
from conveyor.task import Task
from conveyor.web.problems import Problem


def check_arguments(
    task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any], pointer: str = ""
) -> None:
    """Raise an `invalid-arguments` Problem naming the argument when these cannot be passed."""
    try:
        task.checker.check(args, kwargs)
    except InvalidArgumentsError as exc:
        extra: dict[str, Any] = {}
        if exc.argument is not None:
            extra["argument"] = exc.argument
        if exc.where is not None:
            extra["pointer"] = f"{pointer}/{exc.where}"
        raise Problem("invalid-arguments", str(exc), **extra) from None
