-- The limits that govern an available job in the worker's queues, locked in name
-- order until the fetch commits: fetches of one limit take turns, and each one's
-- next statement sees what the previous one leased (READ COMMITTED takes a new
-- snapshot per statement, after the lock is held), so no count is stale.
-- token_wait: seconds until the next token (a hint for the worker's next fetch).
SELECT l.name,
       CASE WHEN l.rate IS NOT NULL AND l.paused_until IS NULL THEN
           (1 - least(l.burst, l.tokens
                      + l.rate * extract(epoch FROM now() - l.refreshed_at)::float8)) / l.rate
       END AS token_wait
FROM conveyor_limits AS l
WHERE EXISTS (
    SELECT 1 FROM conveyor_jobs AS j
    WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = l.name
      AND j.queue = ANY(%(queues)s::text[])
)
ORDER BY l.name
FOR UPDATE OF l
