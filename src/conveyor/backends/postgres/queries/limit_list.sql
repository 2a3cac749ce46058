-- Every limit with its numbers and what it holds now: bucket refilled to now,
-- running (live leases), waiting (available), pause left in seconds.
SELECT l.name, l.rate, l.burst, l.concurrency, l.key_rate, l.key_burst, l.key_concurrency,
       l.queue, l.overridden,
       CASE WHEN l.rate IS NULL THEN NULL ELSE least(
           l.burst, l.tokens + l.rate * greatest(0, extract(epoch FROM now() - l.refreshed_at))::float8)
       END AS tokens,
       (SELECT count(*) FROM conveyor_jobs AS r WHERE r.state = 'running'
          AND r.limit_name IS NOT NULL AND r.limit_name = l.name
          AND r.lease_expires_at > now()) AS running,
       (SELECT count(*) FROM conveyor_jobs AS w WHERE w.state = 'available'
          AND w.limit_name IS NOT NULL AND w.limit_name = l.name) AS waiting,
       greatest(0, extract(epoch FROM l.paused_until - now())::float8) AS paused_for,
       l.paused_reason
FROM conveyor_limits AS l
WHERE %(name)s::text IS NULL OR l.name = %(name)s::text
ORDER BY l.name
