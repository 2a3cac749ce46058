-- conveyor schema 13 for SQLite: durable steps, job context and cancel requests.

-- One row per named step of a job: written when the step finishes (status
-- 'done', its JSON result), or when a durable wait starts ('waiting', until
-- wake_at) and when a signal reaches a job that is still inside the attempt that
-- is about to wait ('signalled'). Every write by a worker is fenced by the job's
-- lease token (in the query), so a worker that lost its lease records nothing.
CREATE TABLE conveyor_job_steps (
    job_id      INTEGER NOT NULL REFERENCES conveyor_jobs (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    args_digest TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('done', 'waiting', 'signalled')),
    result      TEXT CHECK (result IS NULL OR json_valid(result)),
    wake_at     REAL,
    attempt     INTEGER NOT NULL,
    tries       INTEGER NOT NULL DEFAULT 1,
    started_at  REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (job_id, name)
);
-- A release consults it for pending signals (see job_release).
CREATE INDEX conveyor_job_steps_signalled ON conveyor_job_steps (job_id)
    WHERE status = 'signalled';

-- What a running job reports about itself, and an operator's cancel request.
CREATE TABLE conveyor_job_context (
    job_id              INTEGER PRIMARY KEY REFERENCES conveyor_jobs (id) ON DELETE CASCADE,
    progress            REAL CHECK (progress IS NULL OR (progress >= 0 AND progress <= 1)),
    progress_message    TEXT,
    metadata            TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    updated_at          REAL,
    cancel_requested_at REAL,
    cancel_grace        REAL
);
