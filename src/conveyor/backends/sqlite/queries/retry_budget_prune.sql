-- Forget the task's counts older than any window.
DELETE FROM conveyor_retry_budget WHERE task = :task AND second < :second - :keep
