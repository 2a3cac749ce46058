-- conveyor schema 2 for SQLite: observability.
--
-- conveyor_job_stats: durable per-minute aggregates of finished attempts, per
-- queue and task, written in the same transaction as the job transitions that
-- produce them (completion batches, lease rescue), so a count is never lost
-- nor counted twice. SLIs over a 30-day window read about 43,200 small rows
-- per task through the (task, minute) index instead of the job table.
-- wait_le_N counts attempts that started at most N seconds after their run_at
-- (cumulative, like a Prometheus histogram's `le` buckets).
CREATE TABLE conveyor_job_stats (
    minute        REAL    NOT NULL,
    queue         TEXT    NOT NULL,
    task          TEXT    NOT NULL,
    shard         INTEGER NOT NULL DEFAULT 0,
    succeeded     INTEGER NOT NULL DEFAULT 0,
    retried       INTEGER NOT NULL DEFAULT 0,
    dead          INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    wait_le_0_1   INTEGER NOT NULL DEFAULT 0,
    wait_le_0_5   INTEGER NOT NULL DEFAULT 0,
    wait_le_1     INTEGER NOT NULL DEFAULT 0,
    wait_le_5     INTEGER NOT NULL DEFAULT 0,
    wait_le_10    INTEGER NOT NULL DEFAULT 0,
    wait_le_30    INTEGER NOT NULL DEFAULT 0,
    wait_le_60    INTEGER NOT NULL DEFAULT 0,
    wait_le_300   INTEGER NOT NULL DEFAULT 0,
    wait_le_900   INTEGER NOT NULL DEFAULT 0,
    wait_le_3600  INTEGER NOT NULL DEFAULT 0,
    run_seconds   REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, task, shard)
);
CREATE INDEX conveyor_job_stats_task ON conveyor_job_stats (task, minute);

-- Leader election: one row per role; the holder renews before expires_at.
CREATE TABLE conveyor_leaders (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);

-- SLO alert state, so an alert fires once per incident whichever process evaluates.
CREATE TABLE conveyor_alerts (
    key        TEXT    PRIMARY KEY,
    firing     INTEGER NOT NULL CHECK (firing IN (0, 1)),
    changed_at REAL    NOT NULL,
    details    TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(details))
);

-- W3C trace context (traceparent, tracestate) of the enqueuing span, as JSON.
ALTER TABLE conveyor_jobs ADD COLUMN trace_context TEXT CHECK (trace_context IS NULL OR json_valid(trace_context));
