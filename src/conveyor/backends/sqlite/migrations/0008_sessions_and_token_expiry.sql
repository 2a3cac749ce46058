-- conveyor schema 8 for SQLite: server-side dashboard sessions, and API token expiry.

-- When a token stops working by itself (NULL: only when revoked).
ALTER TABLE conveyor_api_tokens ADD COLUMN expires_at REAL;

-- A dashboard sign-in: the browser holds a random session id (never the API
-- token it was made from), this table its SHA-256. The server judges expiry,
-- and a session dies with its token (revoked or expired) and on sign-out.
CREATE TABLE conveyor_sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session_hash TEXT NOT NULL UNIQUE CHECK (length(session_hash) = 64),
    token_id     INTEGER NOT NULL REFERENCES conveyor_api_tokens (id) ON DELETE CASCADE,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL
);
CREATE INDEX conveyor_sessions_token ON conveyor_sessions (token_id);
CREATE INDEX conveyor_sessions_expiry ON conveyor_sessions (expires_at);
