-- Add first attempts (and retries) to the task's count for that second.
INSERT INTO conveyor_retry_budget AS b (task, second, first_attempts, retries)
VALUES (%(task)s::text, %(second)s::bigint, %(first_attempts)s::bigint, %(retries)s::bigint)
ON CONFLICT (task, second) DO UPDATE
SET first_attempts = b.first_attempts + excluded.first_attempts,
    retries = b.retries + excluded.retries
