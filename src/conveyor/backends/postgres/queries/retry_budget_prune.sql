-- Forget the task's counts older than any window.
DELETE FROM conveyor_retry_budget
WHERE task = %(task)s::text AND second < %(second)s::bigint - %(keep)s::float8
