-- Every limit with its numbers and what it holds now: bucket refilled to now,
-- running (live leases), waiting (available), pause left in seconds.
SELECT l.name, l.rate, l.burst, l.concurrency, l.key_rate, l.key_burst, l.key_concurrency,
       l.queue, l.overridden,
       CASE WHEN l.rate IS NULL THEN NULL
            ELSE min(l.burst, l.tokens + l.rate * max(0, :now - l.refreshed_at)) END AS tokens,
       (SELECT count(*) FROM conveyor_jobs AS r WHERE r.state = 'running'
          AND r.limit_name IS NOT NULL AND r.limit_name = l.name
          AND r.lease_expires_at > :now) AS running,
       (SELECT count(*) FROM conveyor_jobs AS w WHERE w.state = 'available'
          AND w.limit_name IS NOT NULL AND w.limit_name = l.name) AS waiting,
       max(0, coalesce(l.paused_until, 0) - :now) AS paused_for,
       l.paused_reason
FROM conveyor_limits AS l
WHERE :name IS NULL OR l.name = :name
ORDER BY l.name
