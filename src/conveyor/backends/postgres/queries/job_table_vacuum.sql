-- Reclaim dead row versions (and their index entries, which the fetch would
-- otherwise walk past). SKIP_LOCKED: when autovacuum (or another worker) is
-- already vacuuming the table, this one does nothing instead of waiting.
-- TRUNCATE false: giving empty pages at the end back to the OS takes an
-- ACCESS EXCLUSIVE lock that would stall every fetch and completion behind it;
-- a queue table reuses those pages soon anyway.
VACUUM (SKIP_LOCKED, TRUNCATE false) conveyor_jobs
