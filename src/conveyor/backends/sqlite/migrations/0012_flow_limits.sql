-- Flow control (docs/flow-control.md): rate and concurrency limits, per limit and
-- per key, enforced by the fetch. A job names at most one limit (limit_name) and a
-- key within it (limit_key, '' for none); jobs without a limit never look here.
ALTER TABLE conveyor_jobs ADD COLUMN limit_name TEXT;
ALTER TABLE conveyor_jobs ADD COLUMN limit_key TEXT
    CHECK (limit_key IS NULL OR limit_name IS NOT NULL);

-- The unlimited fetch reads only unlimited jobs, so a limited backlog ahead of
-- them in the same queue costs it nothing.
DROP INDEX conveyor_jobs_fetch;
CREATE INDEX conveyor_jobs_fetch ON conveyor_jobs (queue, priority, run_at, id)
    WHERE state = 'available' AND limit_name IS NULL;
CREATE INDEX conveyor_jobs_limited ON conveyor_jobs (limit_name, limit_key, priority, run_at, id)
    WHERE state = 'available' AND limit_name IS NOT NULL;
-- Running jobs per limit and key: what concurrency limits count.
CREATE INDEX conveyor_jobs_limited_running ON conveyor_jobs (limit_name, limit_key)
    WHERE state = 'running' AND limit_name IS NOT NULL;

-- One row per limit. rate: starts per second (NULL: no rate limit), burst: the
-- bucket's size, tokens: what it held at refreshed_at. concurrency: most running
-- at once (NULL: no bound). key_*: the same, per key. overridden: an operator set
-- the numbers (`conveyor limits set`), so a deploy's declaration does not undo them.
CREATE TABLE conveyor_limits (
    name             TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    rate             REAL    CHECK (rate IS NULL OR rate > 0),
    burst            REAL    CHECK (burst IS NULL OR burst >= 1),
    concurrency      INTEGER CHECK (concurrency IS NULL OR concurrency >= 1),
    key_rate         REAL    CHECK (key_rate IS NULL OR key_rate > 0),
    key_burst        REAL    CHECK (key_burst IS NULL OR key_burst >= 1),
    key_concurrency  INTEGER CHECK (key_concurrency IS NULL OR key_concurrency >= 1),
    queue            TEXT,
    overridden       INTEGER NOT NULL DEFAULT 0,
    tokens           REAL    NOT NULL DEFAULT 0,
    refreshed_at     REAL    NOT NULL DEFAULT 0,
    paused_until     REAL,
    paused_reason    TEXT,
    throttled        INTEGER NOT NULL DEFAULT 0,
    updated_at       REAL    NOT NULL DEFAULT 0
);

-- One row per (limit, key) seen at enqueue: the key's bucket, its pause, its weight,
-- and its turn (keys are served in turn order, a served key going to the back).
CREATE TABLE conveyor_limit_keys (
    limit_name    TEXT    NOT NULL REFERENCES conveyor_limits (name) ON DELETE CASCADE,
    key           TEXT    NOT NULL,
    weight        INTEGER NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
    turn          INTEGER NOT NULL DEFAULT 0,
    tokens        REAL,
    refreshed_at  REAL    NOT NULL DEFAULT 0,
    paused_until  REAL,
    paused_reason TEXT,
    PRIMARY KEY (limit_name, key)
);
CREATE INDEX conveyor_limit_keys_turn ON conveyor_limit_keys (limit_name, turn);
