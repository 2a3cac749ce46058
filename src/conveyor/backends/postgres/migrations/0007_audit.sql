-- conveyor schema 7 for PostgreSQL: the audit log of operator and admin actions.
--
-- One row per action (retry, cancel, purge, pause, resume, token create and
-- revoke, ...), written in the same transaction as the action itself, so an
-- action that committed always has its entry. Rows are only ever inserted,
-- and deleted once older than the audit retention.
CREATE TABLE conveyor_audit (
    id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 1000),
    source text        NOT NULL CHECK (length(source) <= 1000),
    action text        NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    target text        NOT NULL DEFAULT '' CHECK (length(target) <= 1000),
    count  bigint      NOT NULL DEFAULT 0 CHECK (count >= 0),
    params jsonb       NOT NULL DEFAULT '{}'
);

-- Reads are "the newest since T" and pruning is "older than T".
CREATE INDEX conveyor_audit_at ON conveyor_audit (at);

INSERT INTO conveyor_schema (version, name) VALUES (7, '0007_audit.sql');
