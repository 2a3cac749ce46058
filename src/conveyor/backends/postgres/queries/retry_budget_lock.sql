-- Retry-budget decisions of one task one at a time (released at commit), so two
-- workers cannot both take the last retry of a window.
SELECT pg_advisory_xact_lock(hashtext('conveyor_retry_budget:' || %(task)s::text)) AS locked
