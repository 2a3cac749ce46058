-- conveyor schema 15 for PostgreSQL: the tables rewritten all day are vacuumed
-- at full speed.
--
-- Every job transition is an UPDATE (none can be a HOT update: state appears in
-- the predicate of every partial index, and a lease's expiry is indexed), so
-- each job leaves two dead row versions and their index entries, and the fetch
-- walks past the entries of every job fetched since the last vacuum. Measured
-- on a million-job drain with no vacuum at all, the fetch read 322 index
-- buffers at the start and 5,574 at the end, and the drain fell to a quarter of
-- its rate (docs/performance.md). The maintenance leader now vacuums the job
-- table itself once it holds 50,000 dead versions (whether or not autovacuum
-- runs); where autovacuum does run, these settings stop it from sleeping
-- between pages (the default cost delay throttles it to a few MB/s), so it
-- finishes in seconds and the trail of dead entries stays short, and
-- vacuum_truncate off keeps it from taking the ACCESS EXCLUSIVE lock that
-- returning empty tail pages to the OS needs (which would stall every fetch
-- and completion behind it; a queue table reuses those pages soon anyway).
--
-- Only storage parameters change: no rewrite, and the lock taken (SHARE UPDATE
-- EXCLUSIVE) does not block reads or writes of jobs, so this migrates a live
-- table of any size at once.
ALTER TABLE conveyor_jobs SET (autovacuum_vacuum_cost_delay = 0, vacuum_truncate = false);
ALTER TABLE conveyor_job_stats SET (
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_vacuum_scale_factor = 0.05
);
ALTER TABLE conveyor_leaders SET (autovacuum_vacuum_cost_delay = 0);
ALTER TABLE conveyor_workers SET (autovacuum_vacuum_cost_delay = 0);

INSERT INTO conveyor_schema (version, name) VALUES (15, '0015_table_churn.sql');
