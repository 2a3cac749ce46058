-- Retry marks older than the audit retention, a bounded batch at a time.
DELETE FROM conveyor_job_retries
WHERE id IN (SELECT id FROM conveyor_job_retries
             WHERE at < now() - make_interval(secs => %(older_than)s::float8)
             ORDER BY at LIMIT %(limit)s::integer)
