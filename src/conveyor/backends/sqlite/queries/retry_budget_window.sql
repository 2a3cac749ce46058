-- First attempts and retries of the task within the `window` seconds up to `second`.
SELECT coalesce(sum(first_attempts), 0) AS first_attempts, coalesce(sum(retries), 0) AS retries
FROM conveyor_retry_budget
WHERE task = :task AND second > :second - :window AND second <= :second
