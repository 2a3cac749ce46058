-- conveyor schema 13 for PostgreSQL: durable steps, job context and cancel requests.

-- One row per named step of a job: written when the step finishes (status
-- 'done', its JSON result), or when a durable wait starts ('waiting', until
-- wake_at) and when a signal reaches a job that is still inside the attempt that
-- is about to wait ('signalled'). Every write by a worker is fenced by the job's
-- lease token (in the query), so a worker that lost its lease records nothing.
CREATE TABLE conveyor_job_steps (
    job_id      bigint      NOT NULL REFERENCES conveyor_jobs (id) ON DELETE CASCADE,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    args_digest text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('done', 'waiting', 'signalled')),
    result      jsonb,
    wake_at     timestamptz,
    attempt     integer     NOT NULL,
    tries       integer     NOT NULL DEFAULT 1,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    PRIMARY KEY (job_id, name)
);
-- A release consults it for pending signals (see job_release).
CREATE INDEX conveyor_job_steps_signalled ON conveyor_job_steps (job_id)
    WHERE status = 'signalled';

-- What a running job reports about itself, and an operator's cancel request.
CREATE TABLE conveyor_job_context (
    job_id              bigint PRIMARY KEY REFERENCES conveyor_jobs (id) ON DELETE CASCADE,
    progress            double precision CHECK (progress IS NULL OR progress BETWEEN 0 AND 1),
    progress_message    text,
    metadata            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    updated_at          timestamptz,
    cancel_requested_at timestamptz,
    cancel_grace        double precision
);

INSERT INTO conveyor_schema (version, name) VALUES (13, '0013_steps_and_context.sql');
