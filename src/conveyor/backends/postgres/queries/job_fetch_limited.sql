-- Lease limited jobs, within their limits, in one statement (docs/flow-control.md).
-- A limit that bounds concurrency gives jobs only to the %(start)s free slots, but
-- one that bounds only each key's concurrency (key slots) may also prefetch a key's
-- jobs while the key keeps a slot free besides (a prefetched job holds its key's
-- slot like a running one, so the bound holds; the free slot keeps the key open to
-- a worker that could start it at once). A
-- limit with only a rate may also fill the worker's prefetch (up to %(limit)s in
-- all) while its bucket holds the whole fetch and more: a prefetched job may start
-- up to %(start_within)s seconds after its lease (the worker gives back one that
-- could not), so the bucket does not refill for that long after such a fetch
-- (refreshed_at, the moment refill resumes, moves that far ahead; fetches in the
-- meantime extend the pause, they do not add to it). Counted at the earliest moment
-- a job may start and without the refill of the span in which it may start, every
-- start stays within `burst + rate x T`, however the prefetched ones fall in it.
--
-- locked: the limits with an available job in the worker's queues that no other
--   fetch holds (SKIP LOCKED: a worker never queues behind another's fetch).
--   `version` is the locked row's (a row updated since this statement's snapshot
--   is locked in its newest version), `seen` the snapshot's. Every fetch that
--   leases a limit's jobs updates its row, so where the two differ another fetch
--   leased jobs this snapshot cannot see: the limit is skipped this time
--   (skipped). Where they agree, the snapshot holds every lease of the limit, and
--   the counts below are exact while the lock is held.
-- lim: each bucket refilled to now, and what each limit admits now (allowance).
-- walk: keys take turns round-robin. From the key after the limit's cursor (the
--   last key served), through the keys with an available job in key order, one
--   index probe each, wrapping around to the cursor. It stops after a bounded
--   number of keys, so a fetch visits about the keys it serves, not every key.
-- keys: each visited key's own bucket, free slots and weight; a paused key waits.
-- candidates: up to a key's allowance of its jobs in queue order (and no more than
--   the rounds the fetch can take need); the n-th job of
--   a key of weight w belongs to round ceil(n / w), and picks go round by round,
--   in walk order, each limit within its allowance.
-- spent: the buckets pay for what was leased, and the cursor moves to the last
--   key served. A key's row is written only when the key has its own rate.
-- Every output row carries `skipped` (the limits this fetch found held or just
-- changed: the worker asks again at once); with nothing leased, one row with a
-- NULL id carries it. Expired leases hold no slot.
WITH RECURSIVE locked AS MATERIALIZED (
    SELECT l.name, l.rate, l.burst, l.tokens, l.refreshed_at, l.concurrency, l.key_rate,
           l.key_burst, l.key_concurrency, l.cursor_key, l.xmin::text AS version,
           (SELECT s.xmin::text FROM conveyor_limits AS s WHERE s.name = l.name) AS seen
    FROM conveyor_limits AS l
    WHERE (l.paused_until IS NULL OR l.paused_until <= now())
      -- Without a free slot only a limit that may prefetch can lease (see above).
      AND (%(start)s::integer > 0 OR (l.concurrency IS NULL AND l.key_rate IS NULL
                                      AND (l.key_concurrency IS NULL OR l.rate IS NULL)))
      AND (SELECT 1 FROM conveyor_jobs AS j
           WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = l.name
             AND j.queue = ANY(%(queues)s::text[])
           LIMIT 1) IS NOT NULL
    ORDER BY l.name
    FOR UPDATE OF l SKIP LOCKED
),
lim AS MATERIALIZED (
    SELECT c.name, c.key_rate, c.key_burst, c.key_concurrency, c.cursor_key, b.tokens,
           b.prefetch, c.rate, b.key_slots,
           least(CASE WHEN b.prefetch OR b.key_slots THEN %(limit)s::integer
                      ELSE %(start)s::integer END,
                 coalesce(floor(b.tokens)::integer, %(limit)s::integer),
                 CASE WHEN c.concurrency IS NULL THEN %(limit)s::integer
                      ELSE c.concurrency - (
                          SELECT count(*) FROM conveyor_jobs AS r
                          WHERE r.state = 'running' AND r.limit_name IS NOT NULL
                            AND r.limit_name = c.name AND r.lease_expires_at > now()
                      )::integer END) AS allowance
    FROM locked AS c
    CROSS JOIN LATERAL (
        SELECT t.tokens,
               c.concurrency IS NULL AND c.key_concurrency IS NULL AND c.key_rate IS NULL
               AND (t.tokens IS NULL
                    OR t.tokens >= %(limit)s::integer + c.rate * %(start_within)s::float8)
               AS prefetch,
               c.key_concurrency IS NOT NULL AND c.concurrency IS NULL AND c.rate IS NULL
               AND c.key_rate IS NULL AS key_slots
        FROM (SELECT CASE WHEN c.rate IS NULL THEN NULL ELSE least(
                         c.burst,
                         c.tokens + c.rate * greatest(0, extract(epoch FROM now() - c.refreshed_at))::float8)
                     END AS tokens) AS t
    ) AS b
    WHERE c.version = c.seen
),
skipped AS (
    SELECT coalesce(array_agg(w.name), '{}') AS names
    FROM (
        SELECT l.name FROM conveyor_limits AS l
        WHERE (l.paused_until IS NULL OR l.paused_until <= now())
          AND (%(start)s::integer > 0 OR (l.concurrency IS NULL AND l.key_rate IS NULL
                                          AND (l.key_concurrency IS NULL OR l.rate IS NULL)))
          AND (SELECT 1 FROM conveyor_jobs AS j
               WHERE j.state = 'available' AND j.limit_name IS NOT NULL
                 AND j.limit_name = l.name AND j.queue = ANY(%(queues)s::text[])
               LIMIT 1) IS NOT NULL
        EXCEPT SELECT name FROM lim
    ) AS w
),
walk(limit_name, limit_key, wrapped, n) AS (
    SELECT lim.name, first.limit_key, first.wrapped, 1
    FROM lim CROSS JOIN LATERAL (
        (SELECT j.limit_key, false AS wrapped FROM conveyor_jobs AS j
         WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = lim.name
           AND j.limit_key > lim.cursor_key
         ORDER BY j.limit_name, j.limit_key LIMIT 1)
        UNION ALL
        (SELECT j.limit_key, true FROM conveyor_jobs AS j
         WHERE j.state = 'available' AND j.limit_name IS NOT NULL AND j.limit_name = lim.name
         ORDER BY j.limit_name, j.limit_key LIMIT 1)
        LIMIT 1
    ) AS first
    WHERE lim.allowance > 0
    UNION ALL
    SELECT w.limit_name, nxt.limit_key, nxt.wrapped, w.n + 1
    FROM walk AS w
    JOIN lim ON lim.name = w.limit_name
    CROSS JOIN LATERAL (
        (SELECT j.limit_key, w.wrapped AS wrapped FROM conveyor_jobs AS j
         WHERE j.state = 'available' AND j.limit_name IS NOT NULL
           AND j.limit_name = w.limit_name AND j.limit_key > w.limit_key
         ORDER BY j.limit_name, j.limit_key LIMIT 1)
        UNION ALL
        (SELECT j.limit_key, true FROM conveyor_jobs AS j
         WHERE NOT w.wrapped AND j.state = 'available' AND j.limit_name IS NOT NULL
           AND j.limit_name = w.limit_name
         ORDER BY j.limit_name, j.limit_key LIMIT 1)
        LIMIT 1
    ) AS nxt
    WHERE w.n < 2 * %(limit)s::integer + 16
      AND (NOT nxt.wrapped OR lim.cursor_key IS NULL OR nxt.limit_key <= lim.cursor_key)
),
keys AS MATERIALIZED (
    SELECT w.limit_name, w.limit_key, w.n, coalesce(k.weight, 1) AS weight, kt.tokens,
           least(lim.allowance,
                 coalesce(floor(kt.tokens)::integer, lim.allowance),
                 CASE WHEN lim.key_concurrency IS NULL THEN lim.allowance
                      ELSE lim.key_concurrency - (
                          SELECT count(*) FROM conveyor_jobs AS r
                          WHERE r.state = 'running' AND r.limit_name IS NOT NULL
                            AND r.limit_name = w.limit_name AND r.limit_key = w.limit_key
                            AND r.lease_expires_at > now()
                      )::integer END) AS allowance
    FROM walk AS w
    JOIN lim ON lim.name = w.limit_name
    LEFT JOIN conveyor_limit_keys AS k ON k.limit_name = w.limit_name AND k.key = w.limit_key
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
    ORDER BY n, limit_name
    LIMIT %(limit)s::integer
),
candidates AS MATERIALIZED (
    SELECT c.id, t.limit_name, t.limit_key, t.n, ceil(c.nth::float8 / t.weight) AS round,
           c.nth, t.allowance AS key_room
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
            -- No key needs more than its weight per round, for as many rounds as
            -- the fetch can take with these keys.
            LIMIT least(t.allowance, t.weight * ceil(
                %(limit)s::float8 / (SELECT count(*) FROM turns))::integer)
            FOR UPDATE OF job SKIP LOCKED
        ) AS s
    ) AS c
),
picked AS MATERIALIZED (
    -- Jobs of a limit that bounds concurrency first (they go to free slots), then
    -- round by round in walk order, a key's jobs in queue order (nth). Past the free
    -- slots, a key-slots limit's job is prefetched only while its key keeps a slot
    -- free besides (nth < key_room). Each limit's allowance counts only the jobs
    -- that may be picked.
    SELECT r.id, r.limit_name, r.limit_key, r.n,
           row_number() OVER (ORDER BY r.prefetch, r.round, r.n, r.nth, r.limit_name)
               AS pick_order
    FROM (
        SELECT e.*,
               row_number() OVER (PARTITION BY e.limit_name
                                  ORDER BY e.round, e.n, e.nth) AS nth_in_limit
        FROM (
            SELECT cand.*, lim.prefetch, lim.key_slots, lim.allowance AS limit_allowance,
                   row_number() OVER (PARTITION BY lim.prefetch
                                      ORDER BY cand.round, cand.n, cand.nth, cand.limit_name)
                       AS nth_in_class
            FROM candidates AS cand
            JOIN lim ON lim.name = cand.limit_name
        ) AS e
        WHERE e.prefetch OR e.nth_in_class <= %(start)s::integer
           OR (e.key_slots AND e.nth < e.key_room)
    ) AS r
    WHERE r.nth_in_limit <= r.limit_allowance
    ORDER BY r.prefetch, r.round, r.n, r.nth, r.limit_name
    LIMIT %(limit)s::integer
),
leased AS (
    UPDATE conveyor_jobs AS job
    SET state = 'running',
        attempt = job.attempt + 1,
        lease_owner = %(worker_id)s::text,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8),
        lease_token = job.lease_token + 1,
        start_token = CASE WHEN picked.pick_order <= %(start)s::integer
                           THEN job.lease_token + 1 ELSE job.start_token END,
        started_at = now()
    FROM picked
    WHERE job.id = picked.id AND job.state = 'available'
      -- A job a dead worker held without starting it goes only to a free slot
      -- (job_fetch.sql).
      AND (picked.pick_order <= %(start)s::integer OR job.uncounted_rescues = 0)
    RETURNING job.id, job.task, job.queue, job.args, job.state, job.priority, job.run_at,
              job.attempt, job.max_attempts, job.lease_owner, job.lease_expires_at,
              job.lease_token, job.idempotency_key, job.group_key, job.timeout,
              job.created_at, job.started_at, job.finished_at, job.result::text AS result,
              job.errors, job.tags, job.trace_context, job.limit_name, job.limit_key,
              picked.pick_order, picked.n
),
spent AS (
    UPDATE conveyor_limits AS l
    SET tokens = CASE WHEN lim.tokens IS NULL THEN l.tokens ELSE lim.tokens - used.taken END,
        refreshed_at = CASE WHEN lim.tokens IS NULL THEN l.refreshed_at
                            WHEN used.prefetched > 0 THEN greatest(
                                l.refreshed_at,
                                now() + make_interval(secs => %(start_within)s::float8))
                            ELSE greatest(l.refreshed_at, now()) END,
        cursor_key = used.last_key
    FROM (SELECT limit_name, count(*) AS taken,
                 count(*) FILTER (WHERE pick_order > %(start)s::integer) AS prefetched,
                 (array_agg(limit_key ORDER BY n DESC))[1] AS last_key
          FROM leased GROUP BY limit_name) AS used
    JOIN lim ON lim.name = used.limit_name
    WHERE l.name = used.limit_name
),
served AS (
    INSERT INTO conveyor_limit_keys AS k (limit_name, key, tokens, refreshed_at)
    SELECT used.limit_name, used.limit_key, keys.tokens - used.taken, now()
    FROM (SELECT limit_name, limit_key, count(*) AS taken FROM leased
          GROUP BY limit_name, limit_key) AS used
    JOIN keys ON keys.limit_name = used.limit_name AND keys.limit_key = used.limit_key
    WHERE keys.tokens IS NOT NULL
    ON CONFLICT (limit_name, key) DO UPDATE
    SET tokens = excluded.tokens, refreshed_at = excluded.refreshed_at
)
SELECT leased.*, skipped.names AS skipped
FROM skipped LEFT JOIN leased ON true
