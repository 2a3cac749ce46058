-- Many jobs without idempotency keys in one statement. Rows are inserted in
-- input order, so their ids ascend in input order too.
INSERT INTO conveyor_jobs (
    task, queue, args, state, priority, run_at, max_attempts,
    idempotency_window, group_key, timeout, created_at, tags
)
SELECT spec.task, spec.queue, spec.args::jsonb,
       CASE WHEN spec.run_at > now() THEN 'scheduled' ELSE 'available' END,
       spec.priority, greatest(spec.run_at, now()), spec.max_attempts,
       spec.idempotency_window, spec.group_key, spec.timeout, now(), spec.tags
FROM (
    SELECT given.n, given.task, given.queue, given.args, given.priority, given.max_attempts,
           given.idempotency_window, given.group_key, given.timeout, given.tags,
           coalesce(to_timestamp(given.run_at),
                    now() + make_interval(secs => given.delay)) AS run_at
    FROM jsonb_to_recordset(%(jobs)s::jsonb) AS given(
        n integer, task text, queue text, args text, priority smallint, max_attempts integer,
        run_at float8, delay float8, idempotency_window float8, group_key text,
        timeout float8, tags jsonb
    )
) AS spec
ORDER BY spec.n
RETURNING id, state
