-- One job due now, without an idempotency key (the common single enqueue): a plain
-- VALUES row, and the NOTIFY that wakes workers in the same statement, so the call is
-- one statement and one round trip. The server does less than for job_insert_group
-- (no JSON array to unpack, no run_at to compute): on an idle machine the group form
-- and its NOTIFY, pipelined, took about 600 us per call from psycopg, this one about
-- 380 us (docs/performance.md). The notification goes out only if the INSERT commits.
WITH inserted AS (
    INSERT INTO conveyor_jobs (
        task, queue, args, state, priority, run_at, max_attempts,
        idempotency_window, group_key, timeout, created_at, tags, trace_context, client_id,
        limit_name, limit_key
    )
    VALUES (%(task)s::text, %(queue)s::text, %(args)s::json, 'available',
            %(priority)s::smallint, now(), %(max_attempts)s::integer,
            %(idempotency_window)s::float8, %(group_key)s::text, %(timeout)s::float8, now(),
            %(tags)s::jsonb, %(trace_context)s::jsonb, %(client_id)s::text,
            %(limit_name)s::text, %(limit_key)s::text)
    RETURNING id, state
)
SELECT id, state, pg_notify('conveyor_jobs', %(queues)s::text) AS notified
FROM inserted
