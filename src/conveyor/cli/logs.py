"""Logging for command-line processes: text or JSON lines, always on stderr.

JSON lines carry the job fields a record was logged with (``extra={"job_id": …}``)
so a log pipeline can filter by job, task, queue, attempt or worker.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

import click

LEVELS = ("debug", "info", "warning", "error")

JOB_FIELDS = ("job_id", "task", "queue", "attempt", "worker", "trace_id", "event")
"""Attributes copied from a record's `extra` into each JSON line, when present."""

_MARK = "_conveyor_cli_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, job fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in JOB_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger: message [job_id=… task=…]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [
            f"{name}={record.__dict__[name]}"
            for name in JOB_FIELDS
            if name != "worker" and record.__dict__.get(name) is not None
        ]
        if not fields:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [{' '.join(fields)}]{newline}{rest}"


def configure_logging(level: str = "info", *, json_lines: bool = False) -> None:
    """Send log records (and Python warnings) to stderr, replacing a previous call's handler.

    Inside a click command, the previous set-up is restored when the command ends
    (so a command run in-process, as by CliRunner, leaves logging as it found it).
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _MARK, False):
            root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    setattr(handler, _MARK, True)
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Python warnings (e.g. the SQLite version check) become log lines too, so a
    # JSON log stream stays all JSON.
    logging.captureWarnings(True)

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        logging.captureWarnings(False)

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(restore)
