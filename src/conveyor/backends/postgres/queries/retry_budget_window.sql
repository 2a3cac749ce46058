-- First attempts and retries of the task within the `window` seconds up to `second`.
SELECT coalesce(sum(first_attempts), 0)::bigint AS first_attempts,
       coalesce(sum(retries), 0)::bigint AS retries
FROM conveyor_retry_budget
WHERE task = %(task)s::text
  AND second > %(second)s::bigint - %(window)s::float8 AND second <= %(second)s::bigint
