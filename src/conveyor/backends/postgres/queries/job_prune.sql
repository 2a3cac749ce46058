-- Retention: finished history leaves the table in bounded batches (short
-- transactions, so VACUUM is never held back for long).
DELETE FROM conveyor_jobs
WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE state IN ('succeeded', 'cancelled')
      AND finished_at < now() - make_interval(secs => %(older_than)s::float8)
    ORDER BY finished_at
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
)
