-- result as text: a JSON string result must reach the record decoder as JSON text,
-- not as the Python str psycopg would decode it to.
SELECT id, task, queue, args, state, priority, run_at, attempt, max_attempts,
       lease_owner, lease_expires_at, lease_token, idempotency_key, group_key, timeout,
       created_at, started_at, finished_at, result::text AS result, errors, tags,
       trace_context, limit_name, limit_key
FROM conveyor_jobs
WHERE (%(states)s::text[] IS NULL OR state = ANY (%(states)s::text[]))
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(ids)s::bigint[] IS NULL OR id = ANY (%(ids)s::bigint[]))
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
  AND (%(created_after)s::float8 IS NULL OR created_at >= to_timestamp(%(created_after)s::float8))
  AND (%(created_before)s::float8 IS NULL OR created_at < to_timestamp(%(created_before)s::float8))
  AND (%(error_text)s::text IS NULL
       OR strpos(lower(errors::text), lower(%(error_text)s::text)) > 0)
ORDER BY id DESC
LIMIT %(limit)s::integer
