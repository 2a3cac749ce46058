-- The keys of the open limits in :limits (a JSON array of [name, allowance,
-- key_rate, key_burst, key_concurrency]) that may start a job now, in turn order:
-- served longest ago first (a key never seen first of all). Each key's bucket is
-- refilled to :now, a key never seen has a full one; expired leases hold no slot.
-- `active` is a loose index scan: one probe per key with an available job.
WITH RECURSIVE lim AS (
    SELECT value ->> 0 AS name, value ->> 1 AS allowance, value ->> 2 AS key_rate,
           value ->> 3 AS key_burst, value ->> 4 AS key_concurrency
    FROM json_each(:limits)
),
active(limit_name, limit_key) AS (
    SELECT lim.name, (SELECT j.limit_key FROM conveyor_jobs AS j
                      WHERE j.state = 'available' AND j.limit_name IS NOT NULL
                        AND j.limit_name = lim.name
                      ORDER BY j.limit_name, j.limit_key LIMIT 1)
    FROM lim
    UNION ALL
    SELECT a.limit_name, (SELECT j.limit_key FROM conveyor_jobs AS j
                          WHERE j.state = 'available' AND j.limit_name IS NOT NULL
                            AND j.limit_name = a.limit_name AND j.limit_key > a.limit_key
                          ORDER BY j.limit_name, j.limit_key LIMIT 1)
    FROM active AS a WHERE a.limit_key IS NOT NULL
),
keys AS (
    SELECT a.limit_name, a.limit_key, coalesce(k.weight, 1) AS weight,
           coalesce(k.turn, 0) AS turn, lim.allowance AS limit_allowance,
           CASE WHEN lim.key_rate IS NULL THEN NULL ELSE min(
               lim.key_burst,
               coalesce(k.tokens, lim.key_burst) + lim.key_rate * (:now - coalesce(k.refreshed_at, :now)))
           END AS tokens,
           CASE WHEN lim.key_concurrency IS NULL THEN NULL ELSE lim.key_concurrency - (
               SELECT count(*) FROM conveyor_jobs AS r
               WHERE r.state = 'running' AND r.limit_name IS NOT NULL
                 AND r.limit_name = a.limit_name AND r.limit_key = a.limit_key
                 AND r.lease_expires_at > :now) END AS free
    FROM active AS a
    JOIN lim ON lim.name = a.limit_name
    LEFT JOIN conveyor_limit_keys AS k ON k.limit_name = a.limit_name AND k.key = a.limit_key
    WHERE a.limit_key IS NOT NULL AND (k.paused_until IS NULL OR k.paused_until <= :now)
)
SELECT limit_name, limit_key, weight, turn, tokens,
       min(limit_allowance, coalesce(CAST(tokens AS INTEGER), limit_allowance),
           coalesce(free, limit_allowance)) AS allowance
FROM keys
WHERE min(limit_allowance, coalesce(CAST(tokens AS INTEGER), limit_allowance),
          coalesce(free, limit_allowance)) > 0
ORDER BY turn, limit_name, limit_key
LIMIT :limit
