-- First attempts and retries of the task within the last `window` seconds.
SELECT coalesce(sum(first_attempts), 0) AS first_attempts, coalesce(sum(retries), 0) AS retries
FROM conveyor_retry_budget
WHERE task = :task AND second > CAST(:now AS INTEGER) - :window
