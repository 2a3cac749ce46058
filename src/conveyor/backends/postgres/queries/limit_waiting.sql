-- Every declared limit, whether it has an available job in the worker's queues
-- (has_work), and the seconds until its next token (token_wait, NULL without a
-- rate): whether the worker should look for limited jobs at all, and when to ask
-- again; bounded: the limit counts running jobs or keys' tokens (its jobs go only
-- to free slots, job_fetch_limited.sql); key_slots: it bounds only each key's
-- concurrency, so it holds jobs back only when a fetch found its keys full. has_work is a probe per limit that stops at its first job (an EXISTS
-- here is planned as a hashed subplan that reads every available limited job).
SELECT l.name,
       CASE WHEN l.rate IS NOT NULL THEN
           (1 - b.tokens) / l.rate
           -- A bucket short of a token after a prefetch refills only from refreshed_at.
           + CASE WHEN b.tokens < 1
                  THEN greatest(0, extract(epoch FROM l.refreshed_at - now())::float8)
                  ELSE 0 END
       END AS token_wait,
       (l.concurrency IS NOT NULL OR l.key_concurrency IS NOT NULL OR l.key_rate IS NOT NULL)
       AS bounded,
       (l.key_concurrency IS NOT NULL AND l.concurrency IS NULL AND l.rate IS NULL
        AND l.key_rate IS NULL) AS key_slots,
       (SELECT 1 FROM conveyor_jobs AS j
        WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = l.name
          AND j.queue = ANY(%(queues)s::text[])
        LIMIT 1) IS NOT NULL AS has_work
FROM conveyor_limits AS l
CROSS JOIN LATERAL (
    SELECT least(l.burst, l.tokens + l.rate * greatest(
               0, extract(epoch FROM now() - l.refreshed_at))::float8) AS tokens
) AS b
