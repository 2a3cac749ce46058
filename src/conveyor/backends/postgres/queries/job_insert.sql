-- One job. The unique index decides idempotency: when another transaction holds
-- the same key uncommitted, ON CONFLICT waits for it, then inserts nothing if it
-- committed (READ COMMITTED), and the caller reads the existing job.
WITH spec AS (
    SELECT coalesce(to_timestamp(%(run_at)s::float8),
                    now() + make_interval(secs => %(delay)s::float8)) AS run_at
)
INSERT INTO conveyor_jobs (
    task, queue, args, state, priority, run_at, max_attempts,
    idempotency_key, idempotency_window, group_key, timeout, created_at, tags, trace_context,
    client_id, limit_name, limit_key
)
SELECT %(task)s::text, %(queue)s::text, %(args)s::json,
       CASE WHEN spec.run_at > now() THEN 'scheduled' ELSE 'available' END,
       %(priority)s::smallint, greatest(spec.run_at, now()), %(max_attempts)s::integer,
       %(idempotency_key)s::text, %(idempotency_window)s::float8, %(group_key)s::text,
       %(timeout)s::float8, now(), %(tags)s::jsonb, %(trace_context)s::jsonb,
       %(client_id)s::text, %(limit_name)s::text, %(limit_key)s::text
FROM spec
ON CONFLICT (task, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, state
