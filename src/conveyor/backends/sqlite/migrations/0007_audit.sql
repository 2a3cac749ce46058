-- conveyor schema 7 for SQLite: the audit log of operator and admin actions.
--
-- One row per action (retry, cancel, purge, pause, resume, token create and
-- revoke, ...), written in the same transaction as the action itself, so an
-- action that committed always has its entry. Rows are only ever inserted,
-- and deleted once older than the audit retention.
CREATE TABLE conveyor_audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     REAL NOT NULL,
    actor  TEXT NOT NULL CHECK (length(actor) BETWEEN 1 AND 1000),
    source TEXT NOT NULL CHECK (length(source) <= 1000),
    action TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    target TEXT NOT NULL DEFAULT '' CHECK (length(target) <= 1000),
    count  INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
    params TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params))
);

-- Reads are "the newest since T" and pruning is "older than T".
CREATE INDEX conveyor_audit_at ON conveyor_audit (at);
