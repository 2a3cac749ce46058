-- conveyor schema 8 for PostgreSQL: server-side dashboard sessions, and API token expiry.

-- When a token stops working by itself (NULL: only when revoked).
ALTER TABLE conveyor_api_tokens ADD COLUMN expires_at timestamptz;

-- A dashboard sign-in: the browser holds a random session id (never the API
-- token it was made from), this table its SHA-256. The server judges expiry,
-- and a session dies with its token (revoked or expired) and on sign-out.
CREATE TABLE conveyor_sessions (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_hash text        NOT NULL UNIQUE CHECK (length(session_hash) = 64),
    token_id     bigint      NOT NULL REFERENCES conveyor_api_tokens (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX conveyor_sessions_token ON conveyor_sessions (token_id);
CREATE INDEX conveyor_sessions_expiry ON conveyor_sessions (expires_at);

INSERT INTO conveyor_schema (version, name) VALUES (8, '0008_sessions_and_token_expiry.sql');
