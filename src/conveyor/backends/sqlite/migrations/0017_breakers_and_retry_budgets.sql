-- conveyor schema 17 for SQLite: circuit breakers and retry budgets shared by the fleet.
--
-- One row per task that has a breaker: its state, the attempts and failures of
-- the current and the previous window (the rate is a sliding estimate over the
-- two), the cooldown in force and who holds the half-open probe until when.
-- Times are seconds since the epoch, from the database's clock.
CREATE TABLE conveyor_breakers (
    task              TEXT PRIMARY KEY,
    state             TEXT NOT NULL DEFAULT 'closed'
                      CHECK (state IN ('closed', 'open', 'half-open')),
    window_started_at REAL NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    failures          INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    prev_attempts     INTEGER NOT NULL DEFAULT 0 CHECK (prev_attempts >= 0),
    prev_failures     INTEGER NOT NULL DEFAULT 0 CHECK (prev_failures >= 0),
    cooldown          REAL NOT NULL DEFAULT 0,
    open_until        REAL,
    probe_holder      TEXT,
    probe_expires_at  REAL,
    changed_at        REAL NOT NULL
);

-- Retry budgets: first attempts and retries started per task and second; a retry
-- may start while the retries of the window stay within a fraction of its first
-- attempts (plus a floor).
CREATE TABLE conveyor_retry_budget (
    task           TEXT NOT NULL,
    second         INTEGER NOT NULL,
    first_attempts INTEGER NOT NULL DEFAULT 0 CHECK (first_attempts >= 0),
    retries        INTEGER NOT NULL DEFAULT 0 CHECK (retries >= 0),
    PRIMARY KEY (task, second)
);
