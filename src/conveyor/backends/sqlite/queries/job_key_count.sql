-- Jobs of one task stored under one idempotency key (a cron tick's job, for the
-- missed-cron detector).
SELECT count(*) AS jobs FROM conveyor_jobs WHERE task = :task AND idempotency_key = :key
