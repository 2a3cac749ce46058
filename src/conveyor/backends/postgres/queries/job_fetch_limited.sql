-- Lease up to %(limit)s limited jobs (all to free slots) from the limits in
-- %(names)s, which this transaction holds locked (limit_lock.sql).
--
-- lim: each limit's bucket refilled to now (tokens), and how many it admits now
--   (allowance: whole tokens, free concurrency slots, the fetch's size).
-- active: each (limit, key) with an available job, by a loose index scan (one index
--   probe per key, not one row per job).
-- keys: each key's own bucket and free slots; a key never seen has a full bucket.
-- Keys take turns: the ones served longest ago (lowest turn) first, at most
--   `weight` jobs per key per round; a served key goes to the back (a new turn).
-- Expired leases hold no slot: a running job counts only while its lease lasts.
WITH RECURSIVE lim AS MATERIALIZED (
    SELECT l.name, l.key_rate, l.key_burst, l.key_concurrency, b.tokens,
           least(%(limit)s::integer,
                 coalesce(floor(b.tokens)::integer, %(limit)s::integer),
                 coalesce(l.concurrency - (
                     SELECT count(*) FROM conveyor_jobs AS r
                     WHERE r.state = 'running' AND r.limit_name IS NOT NULL
                       AND r.limit_name = l.name AND r.lease_expires_at > now()
                 )::integer, %(limit)s::integer)) AS allowance
    FROM conveyor_limits AS l
    CROSS JOIN LATERAL (
        SELECT CASE WHEN l.rate IS NULL THEN NULL ELSE least(
                   l.burst, l.tokens + l.rate * extract(epoch FROM now() - l.refreshed_at)::float8)
               END AS tokens
    ) AS b
    WHERE l.name = ANY(%(names)s::text[])
      AND (l.paused_until IS NULL OR l.paused_until <= now())
),
active AS (
    SELECT first.limit_name, first.limit_key
    FROM lim, LATERAL (
        SELECT j.limit_name, j.limit_key FROM conveyor_jobs AS j
        WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = lim.name
        ORDER BY j.limit_name, j.limit_key LIMIT 1
    ) AS first
    WHERE lim.allowance > 0
    UNION ALL
    SELECT nxt.limit_name, nxt.limit_key
    FROM active AS a, LATERAL (
        SELECT j.limit_name, j.limit_key FROM conveyor_jobs AS j
        WHERE j.state = 'available' AND j.limit_name IS NOT NULL
          AND j.limit_name = a.limit_name AND j.limit_key > a.limit_key
        ORDER BY j.limit_name, j.limit_key LIMIT 1
    ) AS nxt
),
keys AS MATERIALIZED (
    SELECT a.limit_name, a.limit_key, coalesce(k.weight, 1) AS weight,
           coalesce(k.turn, 0) AS turn, kt.tokens,
           least(lim.allowance,
                 coalesce(floor(kt.tokens)::integer, lim.allowance),
                 coalesce(lim.key_concurrency - (
                     SELECT count(*) FROM conveyor_jobs AS r
                     WHERE r.state = 'running' AND r.limit_name IS NOT NULL
                       AND r.limit_name = a.limit_name AND r.limit_key = a.limit_key
                       AND r.lease_expires_at > now()
                 )::integer, lim.allowance)) AS allowance
    FROM active AS a
    JOIN lim ON lim.name = a.limit_name
    LEFT JOIN conveyor_limit_keys AS k ON k.limit_name = a.limit_name AND k.key = a.limit_key
    CROSS JOIN LATERAL (
        SELECT CASE WHEN lim.key_rate IS NULL THEN NULL ELSE least(
                   lim.key_burst,
                   coalesce(k.tokens, lim.key_burst)
                   + lim.key_rate * extract(epoch FROM now() - coalesce(k.refreshed_at, now()))::float8)
               END AS tokens
    ) AS kt
    WHERE k.paused_until IS NULL OR k.paused_until <= now()
),
turns AS MATERIALIZED (
    SELECT * FROM keys WHERE allowance > 0
    ORDER BY turn, limit_name, limit_key
    LIMIT %(limit)s::integer
),
candidates AS MATERIALIZED (
    SELECT c.id, t.limit_name, t.limit_key, t.turn,
           ceil(c.nth::float8 / t.weight) AS round
    FROM turns AS t CROSS JOIN LATERAL (
        SELECT s.id, row_number() OVER (ORDER BY s.priority, s.run_at, s.id) AS nth
        FROM (
            SELECT job.id, job.priority, job.run_at FROM conveyor_jobs AS job
            WHERE job.state = 'available' AND job.limit_name IS NOT NULL
              AND job.limit_name = t.limit_name AND job.limit_key = t.limit_key
              AND job.queue = ANY(%(queues)s::text[])
              AND NOT EXISTS (SELECT 1 FROM conveyor_queue_pauses AS p WHERE p.queue = job.queue)
              AND (job.group_key IS NULL OR NOT EXISTS (
                  SELECT 1 FROM conveyor_jobs AS other
                  WHERE other.group_key = job.group_key AND other.id <> job.id
                    AND other.state IN ('scheduled', 'available', 'running')
                    AND (other.state = 'running' OR other.id < job.id)
              ))
            ORDER BY job.priority, job.run_at, job.id
            LIMIT t.allowance
            FOR UPDATE OF job SKIP LOCKED
        ) AS s
    ) AS c
),
picked AS MATERIALIZED (
    SELECT ranked.id, ranked.limit_name, ranked.limit_key,
           row_number() OVER (ORDER BY ranked.round, ranked.turn, ranked.limit_name,
                              ranked.limit_key) AS pick_order
    FROM (
        SELECT cand.*, row_number() OVER (
                   PARTITION BY cand.limit_name
                   ORDER BY cand.round, cand.turn, cand.limit_key) AS nth_in_limit
        FROM candidates AS cand
    ) AS ranked
    JOIN lim ON lim.name = ranked.limit_name
    WHERE ranked.nth_in_limit <= lim.allowance
    ORDER BY ranked.round, ranked.turn, ranked.limit_name, ranked.limit_key
    LIMIT %(limit)s::integer
),
leased AS (
    UPDATE conveyor_jobs AS job
    SET state = 'running',
        attempt = job.attempt + 1,
        lease_owner = %(worker_id)s::text,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8),
        lease_token = job.lease_token + 1,
        start_token = job.lease_token + 1,
        started_at = now()
    FROM picked
    WHERE job.id = picked.id AND job.state = 'available'
    RETURNING job.id, job.task, job.queue, job.args, job.state, job.priority, job.run_at,
              job.attempt, job.max_attempts, job.lease_owner, job.lease_expires_at,
              job.lease_token, job.idempotency_key, job.group_key, job.timeout,
              job.created_at, job.started_at, job.finished_at, job.result::text AS result,
              job.errors, job.tags, job.trace_context, job.limit_name, job.limit_key,
              picked.pick_order
),
spent AS (
    UPDATE conveyor_limits AS l
    SET tokens = lim.tokens - used.n, refreshed_at = now()
    FROM (SELECT limit_name, count(*) AS n FROM leased GROUP BY limit_name) AS used
    JOIN lim ON lim.name = used.limit_name
    WHERE l.name = used.limit_name AND lim.tokens IS NOT NULL
),
served AS (
    INSERT INTO conveyor_limit_keys AS k (limit_name, key, tokens, refreshed_at, turn)
    SELECT used.limit_name, used.limit_key, keys.tokens - used.n, now(),
           nextval('conveyor_limit_turns')
    FROM (SELECT limit_name, limit_key, count(*) AS n FROM leased
          GROUP BY limit_name, limit_key) AS used
    JOIN keys ON keys.limit_name = used.limit_name AND keys.limit_key = used.limit_key
    ON CONFLICT (limit_name, key) DO UPDATE
    SET tokens = excluded.tokens, refreshed_at = excluded.refreshed_at, turn = excluded.turn
)
SELECT * FROM leased
