"""Tasks whose outcome is hard to record: imported by the tests and by process-pool children.

The children find the database in CONVEYOR_URL (the test sets it before starting a worker).
"""

from __future__ import annotations

import os
from typing import Any

from conveyor import Conveyor


class Unprintable(ValueError):
    """An exception that cannot be turned into text, either way."""

    def __str__(self) -> str:
        raise TypeError("no text for you")

    def __repr__(self) -> str:
        raise TypeError("no repr either")


class Unformattable(ValueError):
    """An exception whose traceback cannot be formatted (its __notes__ raise)."""

    @property
    def __notes__(self) -> list[str]:  # type: ignore[override]
        raise TypeError("notes are broken")


def build(url: str) -> Conveyor:
    app = Conveyor(url, poll_interval=0.05, lease=5.0)

    @app.task(name="returns_set", max_attempts=3)
    def returns_set() -> Any:
        return {1, 2}

    @app.task(name="returns_nested", max_attempts=3)
    def returns_nested() -> Any:
        return {"rows": [b"bytes"]}

    @app.task(name="raises_unprintable", max_attempts=1)
    def raises_unprintable() -> None:
        raise Unprintable()

    @app.task(name="raises_unformattable", max_attempts=1)
    def raises_unformattable() -> None:
        raise Unformattable("formatting fails")

    return app


app = build(os.environ["CONVEYOR_URL"]) if "CONVEYOR_URL" in os.environ else None
