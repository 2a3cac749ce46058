-- Retry-budget decisions of one task one at a time (released at commit), so two
-- workers cannot both take the last retry of a window. The clock is read once the
-- lock is held (not the transaction's start: a transaction that waited for the lock
-- must not count into a second whose window others have already judged).
SELECT extract(epoch FROM clock_timestamp())::float8 AS now
FROM (SELECT pg_advisory_xact_lock(hashtext('conveyor_retry_budget:' || %(task)s::text))) AS held
