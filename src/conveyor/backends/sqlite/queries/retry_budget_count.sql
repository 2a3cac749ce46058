-- Add first attempts (and retries) to the task's count for that second.
INSERT INTO conveyor_retry_budget (task, second, first_attempts, retries)
VALUES (:task, :second, :first_attempts, :retries)
ON CONFLICT (task, second) DO UPDATE
SET first_attempts = conveyor_retry_budget.first_attempts + excluded.first_attempts,
    retries = conveyor_retry_budget.retries + excluded.retries
