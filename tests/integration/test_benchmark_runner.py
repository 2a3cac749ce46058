"""The benchmark runner still runs: conveyor's part of it, at a tiny size.

Speed is not asserted here (it is measured by `python benchmarks/run.py`); this
only keeps the runner from rotting. The peers are not installed in the test
environment, so only the conveyor systems run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("system", ["conveyor-sqlite", "conveyor-postgres"])
def test_the_runner_measures_conveyor_and_writes_a_results_table(
    system: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if system == "conveyor-postgres":
        request.getfixturevalue("pg_database")  # a server answers (or CI fails here)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", system,
         "--sizes", "20,200,40,5", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "BENCH_PG_ADMIN_URL": PG_ADMIN_URL},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [written] = list(tmp_path.glob("*-quick.md"))
    text = written.read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| {system} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # enqueue 1/call, bulk, no-op drain, 10 ms drain: all measured, all positive.
    for cell in cells[1:5]:
        assert re.fullmatch(r"[\d,]+", cell), row
        assert int(cell.replace(",", "")) > 0, row
    assert re.fullmatch(r"[\d.]+ / [\d.]+ / [\d.]+", cells[5]), row
    assert "Load average" in text and "synchronous" in text
    assert not (tmp_path / "latest.md").exists()


def test_the_backlog_row_reports_both_ends_of_the_drain_and_the_job_table(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue("pg_database")  # a server answers (or CI fails here)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "conveyor-postgres",
         "--backlog", "3000", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "BENCH_PG_ADMIN_URL": PG_ADMIN_URL},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [written] = list(tmp_path.glob("backlog-*.md"))
    text = written.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| conveyor-postgres |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "3,000"
    # bulk enqueue, first 10%, last 10%, whole drain: measured and positive.
    for cell in (cells[2], cells[3], cells[4], cells[6]):
        assert re.fullmatch(r"[\d,]+", cell) and int(cell.replace(",", "")) > 0, row
    assert re.fullmatch(r"\d+%", cells[5]), row
    # The snapshots near both ends: per-job costs, and the plans of fetch and completion.
    assert "CPU per job: PostgreSQL" in text and "bytes/job" in text
    for plan in ("fetch at the start", "complete at the start", "fetch at the end",
                 "complete at the end"):
        assert plan in text
    assert "Index Scan using conveyor_jobs_fetch" in text
