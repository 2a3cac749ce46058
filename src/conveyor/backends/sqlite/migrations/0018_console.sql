-- conveyor schema 18 for SQLite: what the operator console shows that the jobs
-- themselves do not keep.
--
-- conveyor_job_retries: one row per job an operator retried (written in the
-- retry's transaction), so a job's attempt history can show where a fresh set of
-- attempts began, by whom. `after_errors` is how many failed attempts the job's
-- history held then. Pruned with the audit log (same retention).
CREATE TABLE conveyor_job_retries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id       INTEGER NOT NULL,
    at           REAL NOT NULL,
    actor        TEXT NOT NULL DEFAULT '' CHECK (length(actor) <= 1000),
    after_errors INTEGER NOT NULL CHECK (after_errors >= 0)
);
CREATE INDEX conveyor_job_retries_job ON conveyor_job_retries (job_id);
CREATE INDEX conveyor_job_retries_at ON conveyor_job_retries (at);

-- conveyor_spool_hosts: what each application host's spool forwarder delivered,
-- reported by the forwarder after each batch the database confirmed (one row per
-- host and spool folder). `depth` and `oldest_spooled_at` are as of `reported_at`.
CREATE TABLE conveyor_spool_hosts (
    host              TEXT NOT NULL CHECK (length(host) BETWEEN 1 AND 255),
    path              TEXT NOT NULL CHECK (length(path) <= 4096),
    forwarded         INTEGER NOT NULL DEFAULT 0 CHECK (forwarded >= 0),
    depth             INTEGER NOT NULL DEFAULT 0 CHECK (depth >= 0),
    oldest_spooled_at REAL,
    first_forward_at  REAL NOT NULL,
    reported_at       REAL NOT NULL,
    PRIMARY KEY (host, path)
);

-- The run-time histogram of the per-minute aggregates (like the wait histogram):
-- run_le_X counts the attempts that ran at most X seconds, so the console can
-- show run-time percentiles after the jobs themselves are pruned. 0 for older rows.
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_01 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_025 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_05 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_25 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_5 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_5 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_30 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_300 INTEGER NOT NULL DEFAULT 0;
