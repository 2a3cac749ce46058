-- conveyor schema 18 for PostgreSQL: what the operator console shows that the
-- jobs themselves do not keep.
--
-- conveyor_job_retries: one row per job an operator retried (written in the
-- retry's transaction), so a job's attempt history can show where a fresh set of
-- attempts began, by whom. `after_errors` is how many failed attempts the job's
-- history held then. Pruned with the audit log (same retention).
CREATE TABLE conveyor_job_retries (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       bigint      NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text        NOT NULL DEFAULT '' CHECK (length(actor) <= 1000),
    after_errors integer     NOT NULL CHECK (after_errors >= 0)
);
CREATE INDEX conveyor_job_retries_job ON conveyor_job_retries (job_id);
CREATE INDEX conveyor_job_retries_at ON conveyor_job_retries (at);

-- conveyor_spool_hosts: what each application host's spool forwarder delivered,
-- reported by the forwarder after each batch the database confirmed (one row per
-- host and spool folder). `depth` and `oldest_spooled_at` are as of `reported_at`.
CREATE TABLE conveyor_spool_hosts (
    host              text        NOT NULL CHECK (length(host) BETWEEN 1 AND 255),
    path              text        NOT NULL CHECK (length(path) <= 4096),
    forwarded         bigint      NOT NULL DEFAULT 0 CHECK (forwarded >= 0),
    depth             bigint      NOT NULL DEFAULT 0 CHECK (depth >= 0),
    oldest_spooled_at timestamptz,
    first_forward_at  timestamptz NOT NULL DEFAULT now(),
    reported_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, path)
);

-- The run-time histogram of the per-minute aggregates (like the wait histogram):
-- run_le_X counts the attempts that ran at most X seconds, so the console can
-- show run-time percentiles after the jobs themselves are pruned. 0 for older rows.
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_01 bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_025 bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_05 bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_1 bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_25 bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_0_5 bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_1 bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_5 bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_30 bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_job_stats ADD COLUMN run_le_300 bigint NOT NULL DEFAULT 0;

INSERT INTO conveyor_schema (version, name) VALUES (18, '0018_console.sql');
