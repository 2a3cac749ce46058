-- result as text: a JSON string result must reach the record decoder as JSON text,
-- not as the Python str psycopg would decode it to.
SELECT id, task, queue, args, state, priority, run_at, attempt, max_attempts,
       lease_owner, lease_expires_at, lease_token, idempotency_key, group_key, timeout,
       created_at, started_at, finished_at, result::text AS result, errors, tags,
       trace_context, limit_name, limit_key
FROM conveyor_jobs
WHERE id = %(job_id)s::bigint
