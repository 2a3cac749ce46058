-- Scheduled jobs whose time has come become available (runs inside each fetch).
-- SKIP LOCKED: workers fetching at the same moment stage disjoint rows, never wait.
UPDATE conveyor_jobs SET state = 'available'
WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE state = 'scheduled' AND run_at <= now()
    ORDER BY run_at
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
)
