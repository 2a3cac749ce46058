"""The process pool: one child process per slot, spoken to in JSON lines.

The parent writes one job per line on the child's stdin and reads one answer
per line back: the attempt's `AttemptResult` and the child's resident memory after
it. No pickle: a job is data. A child that overruns the task's timeout is
killed (a *hard* timeout) and replaced; a child that dies (segfault,
`os._exit`, OOM kill) fails only the attempt it was running. A child is
recycled (asked to exit, replaced for the next job) after `max_jobs` jobs or
once its resident memory passes `max_memory` bytes, so a task that leaks
memory cannot grow a worker without bound. A child runs in its own process
group and ignores SIGINT: a terminal's Ctrl-C stops the worker gracefully
(as SIGTERM does) without interrupting the attempts its children run.

Run as ``python -m conveyor.child_process module:app PARENT_PID``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from conveyor.errors import ConveyorError, TaskTimeout
from conveyor.middleware import AttemptResult
from conveyor.types import JobRecord, JobState
from conveyor.worker.executor import failure, run_attempt

log = logging.getLogger("conveyor.worker")


def resident_memory() -> int:
    """This process's resident set size in bytes (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes, else KiB


CHILD_START_TIMEOUT = 120.0
"""Seconds a new child may take to import the app before it counts as failed."""


class ChildDied(ConveyorError):
    """Recorded when the process running an attempt exited without answering."""


class ChildProcess:
    """One child, owned by one slot thread of the parent."""

    def __init__(
        self, app_path: str, *, max_jobs: int | None = None, max_memory: int | None = None
    ) -> None:
        self.app_path = app_path
        self.max_jobs = max_jobs
        self.max_memory = max_memory
        """Bytes of resident memory past which the child is replaced after its job."""
        self.jobs_run = 0
        self.recycled = 0
        """Children replaced for reaching max_jobs or max_memory."""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _start(self) -> subprocess.Popen[bytes] | AttemptResult:
        """The running child, or a new one once it said it is ready (or why it is not)."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor.child_process", self.app_path, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            # Its own process group: a terminal's Ctrl-C (SIGINT to the foreground group)
            # reaches the worker alone, which stops gracefully as for SIGTERM, instead of
            # interrupting the attempt. The child still dies with the worker (main()).
            process_group=0,
        )
        self._proc = proc
        self.jobs_run = 0
        # Wait for the child to have imported the app before handing it a job, so a
        # task's timeout measures the attempt, not the child's start-up.
        assert proc.stdout is not None
        ready = _read_line(proc.stdout, CHILD_START_TIMEOUT)
        if ready is None:
            self.kill()
            return failure(ChildDied(
                f"the child process did not start within {CHILD_START_TIMEOUT:g}s"
            ))
        if not ready:
            return self._died(proc, "starting (look at the worker's stderr for why)")
        return proc

    def run(self, record: JobRecord) -> AttemptResult:
        proc = self._start()
        if isinstance(proc, AttemptResult):
            return proc
        assert proc.stdin is not None and proc.stdout is not None
        request = json.dumps(
            {"id": record.id, "task": record.task, "args": record.args, "kwargs": record.kwargs,
             "attempt": record.attempt, "max_attempts": record.max_attempts,
             "timeout": record.timeout, "queue": record.queue,
             "lease_token": record.lease_token}
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
        answer = json.loads(line)
        rss = int(answer.get("rss", 0))
        if self.max_jobs is not None and self.jobs_run >= self.max_jobs:
            self.recycled += 1
            self.stop()
        elif self.max_memory is not None and rss > self.max_memory:
            log.info(
                "child %d uses %.0f MB after %d job(s), over the %.0f MB limit: replacing it",
                proc.pid, rss / 2**20, self.jobs_run, self.max_memory / 2**20,
            )
            self.recycled += 1
            self.stop()
        return AttemptResult.from_json(json.dumps(answer["outcome"]))

    def _died(
        self, proc: subprocess.Popen[bytes], doing: str = "running the attempt"
    ) -> AttemptResult:
        code = proc.wait()
        self._proc = None
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return failure(ChildDied(f"the process {doing} died ({how})"))

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


def die_with_parent(parent_pid: int) -> None:
    """Be killed when the worker dies, instead of running its attempt on as an orphan.

    A SIGKILLed worker cannot record the attempt, so its job runs again after the
    lease: an orphan finishing it anyway only doubles the effect, and one running a
    hung task would never end. Linux kills us with the parent (PR_SET_PDEATHSIG,
    tied to the slot thread that started us, which outlives its child); elsewhere,
    and for a parent that died before the call, we look at our parent's pid.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


def main(argv: list[str], load_app: Callable[[str], Any]) -> int:
    """Serve attempts of the app `load_app(argv[0])` returns (see `conveyor.child_process`)."""
    # The worker decides when an attempt stops (grace period, timeout): an interrupt
    # meant for it must not fail the attempt here. SIGTERM from the worker still ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from conveyor.clock import to_datetime

    if len(argv) > 1:
        die_with_parent(int(argv[1]))
    app = load_app(argv[0])
    # Our answers go to the real stdout; anything the task prints goes to stderr.
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    channel.write(b'{"ready": true}\n')
    channel.flush()
    for line in sys.stdin.buffer:
        request: dict[str, Any] = json.loads(line)
        record = JobRecord(
            id=request["id"], task=request["task"], queue=request.get("queue", ""),
            args=request["args"],
            kwargs=request["kwargs"], state=JobState.RUNNING, priority=0,
            run_at=to_datetime(0), attempt=request["attempt"],
            max_attempts=request["max_attempts"], lease_owner=None, lease_expires_at=None,
            lease_token=request.get("lease_token", 0), idempotency_key=None, group_key=None,
            timeout=None,
            created_at=to_datetime(0), started_at=None, finished_at=None, result=None,
        )
        try:
            # A JobContext in the child talks to the database over the child's own
            # connection (the app it loaded): see conveyor.steps.
            outcome = run_attempt(
                app.tasks.get(record.task), record, context_store=app.backend,
                context_timeout=request.get("timeout"),
            )
        except BaseException as exc:  # run_attempt never raises; if it did, say so
            outcome = failure(exc)
        answer = {"outcome": json.loads(outcome.to_json()), "rss": resident_memory()}
        channel.write(json.dumps(answer).encode() + b"\n")
        channel.flush()
    return 0

