-- conveyor schema 16 for SQLite: the durable log of operational events, and incidents.
--
-- An event is something that happened to the system rather than to one job: an
-- alert fired or resolved, a worker started or died, a queue was paused, an
-- operator annotated a deploy. Rows are only ever inserted (in batches, off the
-- job path), and deleted once older than the event retention.
CREATE TABLE conveyor_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL NOT NULL,
    kind    TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    subject TEXT NOT NULL DEFAULT '' CHECK (length(subject) <= 1000),
    actor   TEXT NOT NULL DEFAULT '' CHECK (length(actor) <= 1000),
    details TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details))
);

-- Reads are "between T1 and T2" (a timeline) and pruning is "older than T".
CREATE INDEX conveyor_events_at ON conveyor_events (at);

-- One incident: opened by a page-level alert (alert_key) or by hand, closed when
-- the alert resolves (or by hand). At most one open incident per alert.
CREATE TABLE conveyor_incidents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    opened_at     REAL NOT NULL,
    closed_at     REAL CHECK (closed_at IS NULL OR closed_at >= opened_at),
    title         TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 1000),
    alert_key     TEXT CHECK (alert_key IS NULL OR length(alert_key) <= 1000),
    opened_by     TEXT NOT NULL CHECK (length(opened_by) BETWEEN 1 AND 1000),
    closed_by     TEXT CHECK (closed_by IS NULL OR length(closed_by) <= 1000),
    details       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
    close_details TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(close_details))
);

CREATE UNIQUE INDEX conveyor_incidents_open_alert ON conveyor_incidents (alert_key)
    WHERE closed_at IS NULL AND alert_key IS NOT NULL;
CREATE INDEX conveyor_incidents_opened_at ON conveyor_incidents (opened_at);
