-- Retry marks older than the audit retention, a bounded batch at a time.
DELETE FROM conveyor_job_retries
WHERE id IN (SELECT id FROM conveyor_job_retries WHERE at < :now - :older_than
             ORDER BY at LIMIT :limit)
