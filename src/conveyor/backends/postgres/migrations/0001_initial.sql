-- conveyor schema 1 for PostgreSQL.
--
-- Times are timestamptz and every one of them is written from the database's
-- clock (now()), never a worker's. JSON is jsonb. The state machine is enforced
-- here as well as in the code: a running job always has a lease, a finished job
-- always has finished_at, nothing else does.
--
-- Every migration records itself in conveyor_schema as its last statement, so
-- the SQL that `conveyor migrate --dry-run` prints is complete for teams that
-- apply it with their own tool (Alembic, Django, Flyway).
CREATE TABLE conveyor_schema (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conveyor_jobs (
    id                     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task                   text        NOT NULL CHECK (length(task) BETWEEN 1 AND 255),
    queue                  text        NOT NULL CHECK (length(queue) BETWEEN 1 AND 255),
    args                   jsonb       NOT NULL CHECK (jsonb_typeof(args) = 'array'),
    state                  text        NOT NULL CHECK (state IN
                               ('scheduled', 'available', 'running', 'succeeded', 'dead', 'cancelled')),
    priority               smallint    NOT NULL CHECK (priority BETWEEN 0 AND 9),
    run_at                 timestamptz NOT NULL,
    attempt                integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts           integer     NOT NULL CHECK (max_attempts >= 1),
    lease_owner            text,
    lease_expires_at       timestamptz,
    lease_token            bigint      NOT NULL DEFAULT 0,
    idempotency_key        text,
    idempotency_window     double precision NOT NULL DEFAULT 0 CHECK (idempotency_window >= 0),
    idempotency_expires_at timestamptz,
    group_key              text,
    timeout                double precision CHECK (timeout IS NULL OR timeout > 0),
    created_at             timestamptz NOT NULL DEFAULT now(),
    started_at             timestamptz,
    finished_at            timestamptz,
    result                 jsonb,
    errors                 jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(errors) = 'array'),
    tags                   jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tags) = 'array'),
    CONSTRAINT conveyor_jobs_running_has_lease
        CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT conveyor_jobs_finished_has_time
        CHECK ((state IN ('succeeded', 'dead', 'cancelled')) = (finished_at IS NOT NULL))
);

-- Hot paths only index the rows they look at, so finished history costs them nothing.
CREATE INDEX conveyor_jobs_fetch ON conveyor_jobs (queue, priority, run_at, id)
    WHERE state = 'available';
CREATE INDEX conveyor_jobs_staging ON conveyor_jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX conveyor_jobs_leases ON conveyor_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX conveyor_jobs_prune ON conveyor_jobs (finished_at)
    WHERE state IN ('succeeded', 'cancelled');
-- The dead-letter queue is read by operators, newest first.
CREATE INDEX conveyor_jobs_dead ON conveyor_jobs (id) WHERE state = 'dead';
-- No general (state, ...) index: it would compete with the partial ones above, and a
-- planner with stale statistics (right after a bulk enqueue, before autovacuum has
-- analysed the table) picks it for the fetch and sorts the whole backlog every time.
-- Idempotent enqueue is decided here, not by a read-then-write.
CREATE UNIQUE INDEX conveyor_jobs_idempotency ON conveyor_jobs (task, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- A queue table is rewritten row by row all day (every transition is an
-- UPDATE): vacuum it after a small fraction of churn, not the default 20
-- percent, so dead tuples do not pile up in front of the fetch index.
ALTER TABLE conveyor_jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);

CREATE TABLE conveyor_workers (
    id                text        PRIMARY KEY,
    hostname          text        NOT NULL,
    pid               integer     NOT NULL,
    queues            text[]      NOT NULL,
    concurrency       integer     NOT NULL,
    started_at        timestamptz NOT NULL,
    last_heartbeat_at timestamptz NOT NULL,
    running           integer     NOT NULL DEFAULT 0,
    meta              jsonb       NOT NULL DEFAULT '{}'
);

INSERT INTO conveyor_schema (version, name) VALUES (1, '0001_initial.sql');
