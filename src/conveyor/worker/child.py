"""The process pool: one child process per slot, spoken to in JSON lines.

The parent writes one job per line on the child's stdin and reads one
`Outcome` per line back. No pickle: a job is data. A child that overruns the
task's timeout is killed (a *hard* timeout) and replaced; a child that dies
(segfault, `os._exit`, OOM kill) fails only the attempt it was running.

Run as ``python -m conveyor.worker.child module:app``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from typing import IO, Any

from conveyor.errors import ConveyorError, TaskTimeout
from conveyor.types import JobRecord, JobState
from conveyor.worker.executor import Outcome, failure, run_attempt


class ChildDied(ConveyorError):
    """Recorded when the process running an attempt exited without answering."""


class ChildProcess:
    """One child, owned by one slot thread of the parent."""

    def __init__(self, app_path: str, *, max_jobs: int | None = None) -> None:
        self.app_path = app_path
        self.max_jobs = max_jobs
        self.jobs_run = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor.worker.child", self.app_path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            )
            self.jobs_run = 0
        return self._proc

    def run(self, record: JobRecord) -> Outcome:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        request = json.dumps(
            {"id": record.id, "task": record.task, "args": record.args, "kwargs": record.kwargs,
             "attempt": record.attempt, "max_attempts": record.max_attempts,
             "timeout": record.timeout}
        )
        try:
            proc.stdin.write(request.encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._died(proc)
        line = _read_line(proc.stdout, record.timeout)
        if line is None:  # the hard timeout: the task is stopped, not abandoned
            self.kill()
            return failure(TaskTimeout(
                f"attempt exceeded the task's timeout of {record.timeout}s; its process was killed"
            ))
        if not line:
            return self._died(proc)
        self.jobs_run += 1
        if self.max_jobs is not None and self.jobs_run >= self.max_jobs:
            self.stop()
        return Outcome.from_json(line)

    def _died(self, proc: subprocess.Popen[bytes]) -> Outcome:
        code = proc.wait()
        self._proc = None
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return failure(ChildDied(f"the process running the attempt died ({how})"))

    def kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        """Ask the child to finish (close its input); kill it if it lingers."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_line(stream: IO[bytes], timeout: float | None) -> bytes | None:
    """A line from the child; b"" when it died; None when `timeout` ran out."""
    if timeout is None:
        return stream.readline()
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    buffer = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b""
        buffer += chunk
        if buffer.endswith(b"\n"):
            return buffer


def main(argv: list[str]) -> int:
    from conveyor.app import load_app
    from conveyor.clock import to_datetime

    app = load_app(argv[0])
    # Our answers go to the real stdout; anything the task prints goes to stderr.
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin.buffer:
        request: dict[str, Any] = json.loads(line)
        record = JobRecord(
            id=request["id"], task=request["task"], queue="", args=request["args"],
            kwargs=request["kwargs"], state=JobState.RUNNING, priority=0,
            run_at=to_datetime(0), attempt=request["attempt"],
            max_attempts=request["max_attempts"], lease_owner=None, lease_expires_at=None,
            lease_token=0, idempotency_key=None, group_key=None, timeout=None,
            created_at=to_datetime(0), started_at=None, finished_at=None, result=None,
        )
        outcome = run_attempt(app.tasks.get(record.task), record)
        channel.write(outcome.to_json().encode() + b"\n")
        channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
