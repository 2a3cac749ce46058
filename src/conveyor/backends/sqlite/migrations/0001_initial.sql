-- conveyor schema 1 for SQLite. Times are REAL seconds since the Unix epoch.
-- The state machine is enforced here as well as in the code: a running job
-- always has a lease, a finished job always has finished_at, nothing else does.
CREATE TABLE conveyor_jobs (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    task                   TEXT    NOT NULL CHECK (length(task) BETWEEN 1 AND 255),
    queue                  TEXT    NOT NULL CHECK (length(queue) BETWEEN 1 AND 255),
    args                   TEXT    NOT NULL CHECK (json_valid(args)),
    state                  TEXT    NOT NULL CHECK (state IN
                               ('scheduled', 'available', 'running', 'succeeded', 'dead', 'cancelled')),
    priority               INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 9),
    run_at                 REAL    NOT NULL,
    attempt                INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts           INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_owner            TEXT,
    lease_expires_at       REAL,
    lease_token            INTEGER NOT NULL DEFAULT 0,
    idempotency_key        TEXT,
    idempotency_window     REAL    NOT NULL DEFAULT 0 CHECK (idempotency_window >= 0),
    idempotency_expires_at REAL,
    group_key              TEXT,
    timeout                REAL    CHECK (timeout IS NULL OR timeout > 0),
    created_at             REAL    NOT NULL,
    started_at             REAL,
    finished_at            REAL,
    result                 TEXT    CHECK (result IS NULL OR json_valid(result)),
    errors                 TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(errors)),
    tags                   TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
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
-- planner with stale statistics picks it for the fetch and sorts the whole backlog.
-- Idempotent enqueue is decided here, not by a read-then-write.
CREATE UNIQUE INDEX conveyor_jobs_idempotency ON conveyor_jobs (task, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE conveyor_workers (
    id                TEXT    PRIMARY KEY,
    hostname          TEXT    NOT NULL,
    pid               INTEGER NOT NULL,
    queues            TEXT    NOT NULL CHECK (json_valid(queues)),
    concurrency       INTEGER NOT NULL,
    started_at        REAL    NOT NULL,
    last_heartbeat_at REAL    NOT NULL,
    running           INTEGER NOT NULL DEFAULT 0,
    meta              TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(meta))
);
