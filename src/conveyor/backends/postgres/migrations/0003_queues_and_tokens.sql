-- conveyor schema 3 for PostgreSQL: paused queues and the HTTP API's tokens.

-- A paused queue keeps its jobs and takes new ones; workers fetch none of
-- them until it is resumed. One row per paused queue.
CREATE TABLE conveyor_queue_pauses (
    queue     text        PRIMARY KEY CHECK (length(queue) BETWEEN 1 AND 255),
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text        NOT NULL DEFAULT ''
);

-- API tokens: only a SHA-256 of each token is kept (tokens are 256-bit random
-- values, so a fast hash is enough); the token itself is shown once at creation.
CREATE TABLE conveyor_api_tokens (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    token_hash   text        NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    role         text        NOT NULL CHECK (role IN ('viewer', 'enqueuer', 'operator', 'admin')),
    tasks        text[]      NOT NULL DEFAULT '{}',
    queues       text[]      NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

INSERT INTO conveyor_schema (version, name) VALUES (3, '0003_queues_and_tokens.sql');
