-- Reclaim dead row versions (and their index entries, which the fetch would
-- otherwise walk past). SKIP_LOCKED: when autovacuum (or another worker) is
-- already vacuuming the table, this one does nothing instead of waiting.
VACUUM (SKIP_LOCKED) conveyor_jobs
