-- conveyor schema 2 for PostgreSQL: observability.
--
-- conveyor_job_stats: durable per-minute aggregates of finished attempts, per
-- queue and task, written by the same statement as the job transitions that
-- produce them (completion batches, lease rescue), so a count is never lost
-- nor counted twice. SLIs over a 30-day window read about 43,200 small rows
-- per task through the (task, minute) index instead of the job table.
-- wait_le_N counts attempts that started at most N seconds after their run_at
-- (cumulative, like a Prometheus histogram's `le` buckets).
-- shard spreads one minute's counts over a few rows (by connection), so workers
-- completing the same task at the same moment do not queue on one row lock.
CREATE TABLE conveyor_job_stats (
    minute        timestamptz      NOT NULL,
    queue         text             NOT NULL,
    task          text             NOT NULL,
    shard         smallint         NOT NULL DEFAULT 0,
    succeeded     bigint           NOT NULL DEFAULT 0,
    retried       bigint           NOT NULL DEFAULT 0,
    dead          bigint           NOT NULL DEFAULT 0,
    attempts      bigint           NOT NULL DEFAULT 0,
    wait_le_0_1   bigint           NOT NULL DEFAULT 0,
    wait_le_0_5   bigint           NOT NULL DEFAULT 0,
    wait_le_1     bigint           NOT NULL DEFAULT 0,
    wait_le_5     bigint           NOT NULL DEFAULT 0,
    wait_le_10    bigint           NOT NULL DEFAULT 0,
    wait_le_30    bigint           NOT NULL DEFAULT 0,
    wait_le_60    bigint           NOT NULL DEFAULT 0,
    wait_le_300   bigint           NOT NULL DEFAULT 0,
    wait_le_900   bigint           NOT NULL DEFAULT 0,
    wait_le_3600  bigint           NOT NULL DEFAULT 0,
    run_seconds   double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, task, shard)
);
CREATE INDEX conveyor_job_stats_task ON conveyor_job_stats (task, minute);

-- Leader election: one row per role; the holder renews before expires_at.
CREATE TABLE conveyor_leaders (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);

-- SLO alert state, so an alert fires once per incident whichever process evaluates.
CREATE TABLE conveyor_alerts (
    key        text        PRIMARY KEY,
    firing     boolean     NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    details    jsonb       NOT NULL DEFAULT '{}'
);

-- W3C trace context (traceparent, tracestate) of the enqueuing span.
ALTER TABLE conveyor_jobs ADD COLUMN trace_context jsonb;

INSERT INTO conveyor_schema (version, name) VALUES (2, '0002_observability.sql');
