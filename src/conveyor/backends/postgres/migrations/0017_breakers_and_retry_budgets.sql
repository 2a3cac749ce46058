-- conveyor schema 17 for PostgreSQL: circuit breakers and retry budgets shared by the fleet.
--
-- One row per task that has a breaker: its state, the attempts and failures of
-- the current and the previous window (the rate is a sliding estimate over the
-- two), the cooldown in force and who holds the half-open probe until when.
-- Times are seconds since the epoch, from the database's clock (they are
-- compared with one another only, inside one transaction).
CREATE TABLE conveyor_breakers (
    task              text             PRIMARY KEY,
    state             text             NOT NULL DEFAULT 'closed'
                      CHECK (state IN ('closed', 'open', 'half-open')),
    window_started_at double precision NOT NULL,
    attempts          bigint           NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    failures          bigint           NOT NULL DEFAULT 0 CHECK (failures >= 0),
    prev_attempts     bigint           NOT NULL DEFAULT 0 CHECK (prev_attempts >= 0),
    prev_failures     bigint           NOT NULL DEFAULT 0 CHECK (prev_failures >= 0),
    cooldown          double precision NOT NULL DEFAULT 0,
    open_until        double precision,
    probe_holder      text,
    probe_expires_at  double precision,
    changed_at        double precision NOT NULL
);

-- Retry budgets: first attempts and retries started per task and second; a retry
-- may start while the retries of the window stay within a fraction of its first
-- attempts (plus a floor).
CREATE TABLE conveyor_retry_budget (
    task           text   NOT NULL,
    second         bigint NOT NULL,
    first_attempts bigint NOT NULL DEFAULT 0 CHECK (first_attempts >= 0),
    retries        bigint NOT NULL DEFAULT 0 CHECK (retries >= 0),
    PRIMARY KEY (task, second)
);

INSERT INTO conveyor_schema (version, name) VALUES (17, '0017_breakers_and_retry_budgets.sql');
