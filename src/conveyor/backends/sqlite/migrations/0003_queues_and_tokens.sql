-- conveyor schema 3 for SQLite: paused queues and the HTTP API's tokens.

-- A paused queue keeps its jobs and takes new ones; workers fetch none of
-- them until it is resumed. One row per paused queue.
CREATE TABLE conveyor_queue_pauses (
    queue     TEXT PRIMARY KEY CHECK (length(queue) BETWEEN 1 AND 255),
    paused_at REAL NOT NULL,
    paused_by TEXT NOT NULL DEFAULT ''
);

-- API tokens: only a SHA-256 of each token is kept (tokens are 256-bit random
-- values, so a fast hash is enough); the token itself is shown once at creation.
CREATE TABLE conveyor_api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    token_hash   TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'enqueuer', 'operator', 'admin')),
    tasks        TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tasks)),
    queues       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(queues)),
    created_at   REAL NOT NULL,
    last_used_at REAL,
    revoked_at   REAL
);
