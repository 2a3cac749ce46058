-- The limits that govern an available job in the worker's queues (:queues, a JSON
-- array), with each bucket refilled to :now and what each admits now (allowance:
-- whole tokens, free concurrency slots, the fetch's size :limit). SQLite has one
-- writer, so nothing leases between this read and the lease.
SELECT l.name, l.key_rate, l.key_burst, l.key_concurrency, b.tokens,
       CASE WHEN b.tokens < 1 THEN (1 - b.tokens) / l.rate END AS token_wait,
       min(:limit,
           coalesce(CAST(b.tokens AS INTEGER), :limit),
           coalesce(l.concurrency - (
               SELECT count(*) FROM conveyor_jobs AS r
               WHERE r.state = 'running' AND r.limit_name IS NOT NULL
                 AND r.limit_name = l.name AND r.lease_expires_at > :now), :limit)) AS allowance
FROM conveyor_limits AS l
JOIN (SELECT name, CASE WHEN rate IS NULL THEN NULL
                        ELSE min(burst, tokens + rate * (:now - refreshed_at)) END AS tokens
      FROM conveyor_limits) AS b ON b.name = l.name
WHERE (l.paused_until IS NULL OR l.paused_until <= :now)
  AND EXISTS (
    SELECT 1 FROM conveyor_jobs AS j
    WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = l.name
      AND j.queue IN (SELECT value FROM json_each(:queues))
)
ORDER BY l.name
