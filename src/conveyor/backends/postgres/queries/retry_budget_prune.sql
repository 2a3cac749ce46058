-- Forget the task's counts older than any window.
DELETE FROM conveyor_retry_budget
WHERE task = %(task)s::text AND second < floor(extract(epoch FROM now()))::bigint - %(keep)s::float8
