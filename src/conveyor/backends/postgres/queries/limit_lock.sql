-- Of the limits with work here, those no other fetch holds, locked until this
-- fetch commits. SKIP LOCKED: while one worker leases a limit's jobs, the others
-- skip that limit for this round instead of queueing behind it. The lock makes the
-- next statement (a new snapshot in READ COMMITTED, taken once the lock is held)
-- count everything earlier fetches of the limit leased, so no count is stale.
SELECT l.name FROM conveyor_limits AS l
WHERE EXISTS (
    SELECT 1 FROM conveyor_jobs AS j
    WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = l.name
      AND j.queue = ANY(%(queues)s::text[])
)
ORDER BY l.name
FOR UPDATE OF l SKIP LOCKED
