-- Many jobs without idempotency keys that share every option but their
-- arguments, in one statement. The arguments arrive as one JSON array, parsed
-- once (their client ids as a second array of the same length, zipped by
-- ROWS FROM); rows are inserted in input order, so their ids ascend in input order.
WITH spec AS (
    SELECT coalesce(to_timestamp(%(run_at)s::float8),
                    now() + make_interval(secs => %(delay)s::float8)) AS run_at
)
INSERT INTO conveyor_jobs (
    task, queue, args, state, priority, run_at, max_attempts,
    idempotency_window, group_key, timeout, created_at, tags, trace_context, client_id,
    limit_name, limit_key
)
SELECT %(task)s::text, %(queue)s::text, given.args,
       CASE WHEN spec.run_at > now() THEN 'scheduled' ELSE 'available' END,
       %(priority)s::smallint, greatest(spec.run_at, now()), %(max_attempts)s::integer,
       %(idempotency_window)s::float8, %(group_key)s::text, %(timeout)s::float8, now(),
       %(tags)s::jsonb, %(trace_context)s::jsonb, given.client_id,
       %(limit_name)s::text, %(limit_key)s::text
FROM spec, ROWS FROM (json_array_elements(%(args)s::json),
                     json_array_elements_text(%(client_ids)s::json))
     WITH ORDINALITY AS given(args, client_id, n)
ORDER BY given.n
RETURNING id, state
