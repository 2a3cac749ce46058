"""Write docs/reliability.md from the latest run of the failure suite.

    python -m pytest -m faults          # runs every fault, one JSON row each in
                                        # test-artifacts/faults/
    python -m tests.faults.report       # turns those rows into docs/reliability.md

Nothing in the table is typed in: every figure is what the checker counted in
the run (see tests/faults/harness.py for how).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.faults.harness import RESULTS

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"

FAULTS: list[tuple[str, str, str]] = [
    ("sigkill", "1. SIGKILL a worker mid-drain",
     "kill -9 while jobs run; a second worker starts; the leases of the killed worker's jobs "
     "expire and they run again"),
    ("sigterm", "2. SIGTERM a worker mid-drain",
     "grace 1 s, lease 30 s: jobs that can finish within the grace period do; the rest are "
     "released at once and another worker runs them long before any lease would expire"),
    ("hung-task", "3. A job that hangs forever",
     "timeout 1 s, 2 attempts, 3 slots: hard timeout (child killed) in the process pool, "
     "soft in the thread pool; the other slots keep working meanwhile"),
    ("poison-job", "4. A poison job that kills its process",
     "`os._exit(3)` and a segfault through ctypes: in the process pool the child dies; in the "
     "thread pool the whole worker dies and a supervisor restarts it; dead after 2 attempts"),
    ("memory-leak", "5. A task that leaks memory",
     "each job keeps 8 MB; the process pool replaces its child past 100 MB "
     "(`--max-memory-per-child`) or after 5 jobs (`--max-jobs-per-child`)"),
    ("postgres-restart", "6a. PostgreSQL restarted mid-drain",
     "`pg_ctl restart` of a private cluster while two workers drain"),
    ("postgres-unreachable", "6b. PostgreSQL unreachable mid-drain",
     "every connection reset and new ones black-holed for 8 s (a TCP proxy), then restored"),
    ("enqueue-while-down", "7. Enqueue while the database is down",
     "unreachable and stopped: `BackendUnavailable` within the connect timeout (2 s), nothing "
     "written, the caller's own transaction commits. PostgreSQL only: a SQLite file cannot be "
     "unreachable; its failure at enqueue is a full disk (8)"),
    ("disk-full", "8. SQLite: the disk fills up during enqueue",
     "a 10 MB tmpfs: a clear error, `PRAGMA integrity_check` ok, every acknowledged job "
     "there; a worker started on the full disk backs off without losing anything; space "
     "freed, it resumes and everything drains"),
    ("burst", "9. A burst of 100x the normal rate",
     "4 threads enqueue one job per call at a target of 2,000/s for 10 s while a worker drains"),
    ("duplicate-delivery", "10. Duplicate delivery (SIGSTOP past the lease)",
     "the lease breaks, another worker runs the job, the frozen one resumes: twice at most, "
     "the effect once (keyed on the idempotency key), the frozen worker's late completion "
     "refused and the new owner's kept"),
    ("lease-fencing", "11. Lease fencing under a partition",
     "a worker cut off (frozen network) past its lease while another takes the job; its late "
     "completion arrives and is refused. PostgreSQL only: on SQLite, which has no network, "
     "the same fencing is shown by fault 10"),
    ("claim-race", "12. Claim race",
     "4 processes x 8 threads on one queue of 3,000 jobs"),
    ("stopped-lock-holder", "13. A stopped lock holder",
     "three workers drain 400 jobs of 50 ms, lease 1.5 s; one is SIGSTOPped for 3 s, on "
     "SQLite at a moment it holds the write lock, so nobody can commit until it resumes "
     "(completions_committed_during_pause shows it). No lease of a worker that was never "
     "stopped may expire: the stall is credited to every running lease, the stopped "
     "worker's own included. On PostgreSQL nobody waits for it, and only its own leases "
     "expire and are rescued; started_after_finish counts prefetched jobs it started on "
     "resuming after another worker had finished them (refused completions)"),
    ("stale-prefetch", "14. A worker resumed after its lease, with prefetched jobs",
     "1 slot and 5 prefetched jobs, SIGSTOP for 2.5 s with a 1 s lease while a second worker "
     "rescues and runs them; on SIGCONT the resumed worker gives back the prefetched jobs "
     "whose lease passed by its own clock instead of starting them: only the attempt the "
     "pause cut off runs again"),
    ("prefetch-crash", "15. A crash with prefetched jobs",
     "one slot, a prefetch of 6, max_attempts=1: a thread-pool task calls `os._exit(3)` "
     "while its worker holds prefetched jobs; a supervisor restarts the worker. The jobs it "
     "never started get their attempt back and run once; the killer is dead after two "
     "crashes at most. Dead beside it: the job that had just finished when the worker "
     "died, before its completion was written (it ran; max_attempts=1)"),
    ("ctrl-c-process-pool", "16. Ctrl-C with the process pool",
     "SIGINT to the whole process group of `conveyor worker --pool process` (as a terminal's "
     "Ctrl-C), grace 1 s, max_attempts=1: the children do not get it; jobs that can finish "
     "within the grace period do, the rest are released with their attempt unchanged and "
     "run once more on the next worker; none dead"),
    ("partition-spool", "17. Application hosts partitioned from PostgreSQL: spool mode",
     "three application hosts (network namespaces, veth links) cut off at once for 15 s; "
     "this one enqueues 5,000 jobs (4 threads, one job per call, deadline 0.5 s): no caller "
     "sees an error, every job lands exactly once; recovery: from the links back to all "
     "5,000 stored (bound: 10 s)"),
    ("partition-raise", "18. The same partition, raise mode",
     "one call every 20 ms (deadline 1 s): every call made during the partition fails "
     "within 1.5 s with NotStoredError and none of the refused jobs is stored; jobs = calls "
     "that returned, each stored; unknown = the INSERT in flight at the instant of the cut "
     "(EnqueueOutcomeUnknown, named by client id, stored at most once)"),
    ("partition-killed-spool", "19. The same partition, an application SIGKILLed with "
     "1,000 jobs in its spool",
     "spool mode, 1,000 jobs acknowledged as spooled, then kill -9 while still cut off; "
     "after the heal `conveyor spool flush` (as a restart would) delivers each exactly once"),
    ("partition-worker-host", "20. A worker host cut off past its lease",
     "three worker hosts (namespaces, 4 threads each) drain 400 jobs of 100 ms; one is cut "
     "off for 6 s (lease 2 s): the others rescue its jobs, its late completions are "
     "refused, and once its link is back it takes new jobs (80 more enqueued then)"),
    ("limit-slots-sigkill", "21. SIGKILL a worker holding concurrency slots",
     "a limit of 2 running per key (lease 2 s): the worker that holds both slots of a key is "
     "SIGKILLed; a second worker must not run a third job of that key, and gets the slots "
     "back within the lease"),
    ("limits-postgres-restart", "22. PostgreSQL restarted under limits",
     "300 jobs under a 50/s rate limit and 200 jobs under 2 running per key (10 keys), 2 "
     "workers x 8; PostgreSQL restarted mid-drain: no sliding second holds more starts than "
     "rate + burst, no key runs more than 2"),
]

PREAMBLE = """\
# Reliability: what breaks, and what it costs

<!-- Generated by `python -m tests.faults.report` from the latest run of the
failure suite (`python -m pytest -m faults`). Do not edit by hand. -->

conveyor's first promise is that a job, once `enqueue` returned, is never lost
and never stuck, whatever breaks. The failure suite (`tests/faults/`) breaks
things on purpose, with real worker processes and a real database (SQLite, and
a private PostgreSQL cluster that the tests may stop, restart and cut off), and
counts.

## How the figures are counted

Every task appends `start`, `effect` and `end` lines to a history file with one
`write()` on an `O_APPEND` descriptor (whole lines, in order, even across
SIGKILL); the test appends one `enqueue` line per acknowledged job. After the
fault, a checker reads the history and the job rows the database kept:

- **lost**: an acknowledged job that is missing, not finished (stranded in
  `running`, `available` or `scheduled` after the drain), or `succeeded` with no
  execution that completed. Must be 0.
- **extra executions**: starts beyond one per job. Each must be explained by
  an attempt the job's error history records as failed (lease expired,
  timeout, child died) or by an execution the fault interrupted (killed,
  released at shutdown); an unexplained one fails the test.
- **duplicate completions**: jobs whose effect completed more than once; each
  must be matched by a broken lease (`LeaseExpired` in the job's history).
- **stale completions**: a succeeded job whose stored result is not the one of
  its last execution, i.e. a late write from an older lease won. Must be 0.
- **recovery**: seconds from the end of the fault until every job that was in
  flight when it began was back in hand (finished, or started again by a
  worker). For the burst: from the end of the burst to an empty queue; for
  enqueue-while-down: from the database coming back to the next successful
  enqueue; for disk-full: from space freed to the next completion of the
  worker that had been waiting on the full disk.

## Shorter windows than the issue asked, and why

- **Unreachable for 8 s, not 30 s**: 8 s is longer than the lease (3 s) and
  than the worker's first five backoff steps, so leases expire and backoff is
  exercised; a longer outage only repeats the capped backoff step (10 s) and
  would add most of a minute to every CI run.
- **Burst for 10 s, not 30 s**: latency and worker memory are sampled over
  the whole window and a longer window only repeats the same samples; 10 s
  keeps the two runs (one per backend) to about 25 s of CI. The rate asked is
  100 times the normal 20 jobs/s, and the rate reached is shown as measured:
  on the shared 2-core CI machine four enqueuing threads of one Python process
  stay well short of the 2,000 single-job enqueues a second asked for (from
  about a fifth to about half, depending on the machine's load), so the burst
  tested is 20x to 50x the normal rate. `backlog_at_end` shows whether the
  worker kept up during the burst.

## Run it

```sh
python -m pytest -m faults          # the failure suite alone (a few minutes)
python -m tests.faults.report       # regenerate this page from that run
```

It also runs as part of the plain `python -m pytest` that CI runs. Tests that
stop, restart or cut off PostgreSQL use a private cluster (initdb into a
temporary directory, as the `postgres` OS user when run as root), never the
shared server; the disk-full test mounts a small tmpfs, which needs root (under
`CI=true` a failed mount fails the test instead of skipping it).
"""


NEWER: list[tuple[str, str, str, str]] = [
    ('one probe for the fleet',
     'a dependency down under 4 workers x 8; a worker SIGKILLed holding the probe; '
     'PostgreSQL restarted while open',
     '`tests/faults/test_flow_control.py`',
     'flow-control-breakers.md'),
    ('retries within budget, none dead from it',
     'every attempt failing at 50 jobs/s',
     '`tests/faults/test_flow_control.py`',
     'flow-control-breakers.md'),
    ('a limit holds across processes',
     '4 worker processes, rate and per-key limits',
     '`tests/integration/test_flow_control.py`',
     'flow-control.md'),
    ('a prefetched job of a rate limit keeps the bound',
     'its start later than 0.1 s after its fetch (given back, attempt not counted); '
     'the bucket paused for the span in which it may start',
     '`tests/unit/test_held_jobs.py`, `tests/contract/test_flow_limits.py`',
     'flow-control.md'),
    ('a recorded step never runs again',
     '200 jobs of 5 steps, the worker SIGKILLed 8 times mid-run',
     '`tests/integration/test_steps.py`',
     'workflows.md'),
    ('a running job can be cancelled',
     'thread pool (cooperative) and process pool (hard)',
     '`tests/integration/test_steps.py`',
     'workflows.md'),
    ('a fan-in callback runs once',
     'a chord of 1,000, workers SIGKILLed at random',
     '`tests/integration/test_workflows.py`',
     'workflows-composition.md'),
    ('a cancelled workflow starts nothing more',
     '100 pending nodes',
     '`tests/integration/test_workflows.py`',
     'workflows-composition.md'),
    ('an agent never repeats a finished model call',
     "the example's worker killed 3 times",
     '`tests/integration/test_agent_example.py`',
     'workflows.md'),
    ('a slow database does not expire leases',
     'completions written slower than slots finish',
     '`tests/integration/test_table_churn.py`',
     'performance.md'),
    ('events survive the database being away',
     "the event log's database unreachable",
     '`tests/contract/test_event_log.py`',
     'incidents.md'),
]
"""Promises whose tests assert their bound on every run without writing a row above:
(promise, fault, test, page)."""


def load_rows(folder: Path = RESULTS) -> list[dict[str, Any]]:
    rows = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    order = {fault: i for i, (fault, _, _) in enumerate(FAULTS)}
    unknown = [r["fault"] for r in rows if r["fault"] not in order]
    if unknown:
        raise SystemExit(f"unknown fault(s) in {folder}: {unknown}; describe them in FAULTS")
    return sorted(rows, key=lambda r: (order[r["fault"]], r["backend"] != "sqlite",
                                       r["variant"]))


def _notes(notes: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in notes.items())


def render(rows: list[dict[str, Any]]) -> str:
    titles = {fault: title for fault, title, _ in FAULTS}
    lines = [PREAMBLE, "## The latest run", ""]
    if rows:
        stamps = sorted(r["recorded_at"] for r in rows)
        lines.append(f"{len(rows)} rows, recorded {stamps[0]} to {stamps[-1]}. "
                     f"Every row: lost = {sum(r['lost'] for r in rows)} in total.")
        lines.append("")
    lines += [
        "| fault | backend | variant | jobs | succeeded | dead | lost | extra executions "
        "| broken leases | duplicate completions | stale | recovery |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        recovery = "-" if r["recovery_s"] is None else f"{r['recovery_s']:.2f} s"
        extra = f"{r['extra_executions']}"
        if r["unexplained_extra"]:
            extra += f" ({r['unexplained_extra']} unexplained)"
        lines.append(
            f"| {titles[r['fault']]} | {r['backend']} | {r['variant'] or '-'} | {r['jobs']} "
            f"| {r['succeeded']} | {r['dead']} | **{r['lost']}** | {extra} "
            f"| {r['broken_leases']} | {r['duplicate_completions']} "
            f"| {r['stale_completions']} | {recovery} |"
        )
    lines += [
        "", "## Newer promises, and the tests that break them on purpose", "",
        "These tests assert their bound on every run (they fail, and CI with them, when it "
        "does not hold) but write no row above; their figures are in the test output and on "
        "the page named.", "",
        "| promise | fault | test | page |", "|---|---|---|---|",
        *(f"| {promise} | {fault} | {test} | [{page}]({page}) |"
          for promise, fault, test, page in NEWER),
    ]
    lines += ["", "## What each fault does, and the run's own measurements", ""]
    for fault, title, what in FAULTS:
        lines.append(f"**{title}**: {what}.")
        lines.append("")
        for r in rows:
            if r["fault"] == fault and r["notes"]:
                name = " ".join(p for p in (r["backend"], r["variant"]) if p)
                lines.append(f"- {name}: {_notes(r['notes'])}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    rows = load_rows(Path(argv[0]) if argv else RESULTS)
    if not rows:
        print(f"no results in {RESULTS}: run `python -m pytest -m faults` first",
              file=sys.stderr)
        return 1
    DOC.write_text(render(rows))
    print(f"wrote {DOC.relative_to(REPO)} from {len(rows)} results")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
