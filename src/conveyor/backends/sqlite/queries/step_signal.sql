-- A signal for a job waiting on it: the wait step takes the payload. A job still
-- inside the attempt that is about to wait gets 'signalled' (its release then makes
-- it available at once); a job given back to wait gets the finished step.
UPDATE conveyor_job_steps
SET status = CASE WHEN (SELECT state FROM conveyor_jobs WHERE id = :job_id) = 'running'
                  THEN 'signalled' ELSE 'done' END,
    result = :payload,
    finished_at = :now
WHERE job_id = :job_id AND name = :name AND status = 'waiting'
  AND EXISTS (SELECT 1 FROM conveyor_jobs
              WHERE id = :job_id AND state IN ('scheduled', 'available', 'running'))
RETURNING status
