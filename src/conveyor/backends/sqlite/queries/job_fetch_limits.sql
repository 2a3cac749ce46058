-- The limits that govern an available job in the worker's queues (:queues, a JSON
-- array), with each bucket refilled to :now and what each admits now (allowance).
-- A limit that bounds concurrency admits only the :start free slots (but one that
-- bounds only each key's concurrency, key_slots, may prefetch from keys that keep a
-- slot free besides: the caller picks); a limit with only a rate may fill the whole fetch (:limit, its prefetch too) while its bucket
-- holds the fetch and :start_within seconds of refill more (prefetch; see the
-- PostgreSQL query of the same name). SQLite has one writer, so nothing leases
-- between this read and the lease.
SELECT name, key_rate, key_burst, key_concurrency, cursor_key, tokens, prefetch, key_slots,
       (concurrency IS NOT NULL OR key_concurrency IS NOT NULL OR key_rate IS NOT NULL)
       AS bounded,
       CASE WHEN tokens < 1 THEN (1 - tokens) / rate + max(0, refreshed_at - :now) END AS token_wait,
       min(CASE WHEN prefetch OR key_slots THEN :limit ELSE :start END,
           coalesce(CAST(tokens AS INTEGER), :limit),
           coalesce(concurrency - (
               SELECT count(*) FROM conveyor_jobs AS r
               WHERE r.state = 'running' AND r.limit_name IS NOT NULL
                 AND r.limit_name = b.name AND r.lease_expires_at > :now), :limit)) AS allowance
FROM (
    SELECT t.*, (t.concurrency IS NULL AND t.key_concurrency IS NULL AND t.key_rate IS NULL
                 AND (t.tokens IS NULL OR t.tokens >= :limit + t.rate * :start_within)) AS prefetch,
           (t.key_concurrency IS NOT NULL AND t.concurrency IS NULL AND t.rate IS NULL
            AND t.key_rate IS NULL) AS key_slots
    FROM (
        SELECT l.name, l.rate, l.concurrency, l.key_rate, l.key_burst, l.key_concurrency,
               l.cursor_key, l.refreshed_at,
               CASE WHEN l.rate IS NULL THEN NULL
                    ELSE min(l.burst, l.tokens + l.rate * max(0, :now - l.refreshed_at)) END AS tokens
        FROM conveyor_limits AS l
        WHERE (l.paused_until IS NULL OR l.paused_until <= :now)
          AND EXISTS (
            SELECT 1 FROM conveyor_jobs AS j
            WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = l.name
              AND j.queue IN (SELECT value FROM json_each(:queues))
          )
    ) AS t
) AS b
ORDER BY name
