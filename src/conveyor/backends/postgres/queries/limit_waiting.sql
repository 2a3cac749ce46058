-- Every declared limit, whether it has an available job in the worker's queues
-- (has_work), and the seconds until its next token (token_wait, NULL without a
-- rate): whether the worker should look for limited jobs at all, and when to ask
-- again. has_work is a probe per limit that stops at its first job (an EXISTS
-- here is planned as a hashed subplan that reads every available limited job).
SELECT l.name,
       CASE WHEN l.rate IS NOT NULL THEN
           (1 - least(l.burst, l.tokens
                      + l.rate * extract(epoch FROM now() - l.refreshed_at)::float8)) / l.rate
       END AS token_wait,
       (SELECT 1 FROM conveyor_jobs AS j
        WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = l.name
          AND j.queue = ANY(%(queues)s::text[])
        LIMIT 1) IS NOT NULL AS has_work
FROM conveyor_limits AS l
