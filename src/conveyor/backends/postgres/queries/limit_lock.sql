-- Of the limits with work here, those no other fetch holds, locked until this
-- fetch commits. SKIP LOCKED: while one worker leases a limit's jobs, the others
-- skip that limit for this round instead of queueing behind it. The lock makes the
-- next statement (a new snapshot in READ COMMITTED, taken once the lock is held)
-- count everything earlier fetches of the limit leased, so no count is stale.
-- The work test probes each limit's jobs up to the first one (LIMIT 1): an EXISTS
-- becomes a semi-join that reads every available limited job on each fetch.
SELECT l.name FROM conveyor_limits AS l
WHERE (
    SELECT 1 FROM conveyor_jobs AS j
    WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = l.name
      AND j.queue = ANY(%(queues)s::text[])
    LIMIT 1
) IS NOT NULL
ORDER BY l.name
FOR UPDATE OF l SKIP LOCKED
