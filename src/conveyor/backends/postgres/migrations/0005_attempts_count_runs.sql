-- conveyor schema 5 for PostgreSQL: attempts count runs.
--
-- The fetch leases a job and counts its attempt; a worker that dies with jobs
-- it fetched but never started must not cost them that attempt. The worker
-- records when an attempt starts: start_token is the lease_token of the lease
-- whose attempt started (the fetch, for jobs it hands to a free slot, or the
-- worker's batched start marks). The rescue of an expired lease counts the
-- attempt only when start_token = lease_token; otherwise it gives the attempt
-- back and adds one to uncounted_rescues. A job found on a dead worker's hands
-- whose start was never recorded gets its attempt back once; the next time it
-- is counted, so a task that kills its worker before its start is recorded
-- cannot loop forever. A job with uncounted_rescues > 0 goes only to a free
-- slot (its start recorded by the fetch), never into a prefetch again, so a
-- second crash of a worker it merely waited in cannot cost it its attempt.
-- An operator's retry sets the count back to 0.
ALTER TABLE conveyor_jobs ADD COLUMN start_token bigint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_jobs ADD COLUMN uncounted_rescues integer NOT NULL DEFAULT 0
    CHECK (uncounted_rescues >= 0);
-- Jobs running during the upgrade keep the old rule: their attempt counts.
UPDATE conveyor_jobs SET start_token = lease_token WHERE state = 'running';

INSERT INTO conveyor_schema (version, name) VALUES (5, '0005_attempts_count_runs.sql');
