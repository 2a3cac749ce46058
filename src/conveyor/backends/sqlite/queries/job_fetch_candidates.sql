-- A paused queue offers nothing (its jobs stay available for when it resumes).
-- A job of an ordering group waits while its group has a running job or an
-- earlier unfinished one.
-- held_back: a job given its attempt back by a rescue (see job_rescue.sql) goes only
-- to a free slot, never into a prefetch (see job_fetch in backend.py).
SELECT id, uncounted_rescues > 0 AS held_back FROM conveyor_jobs AS job
WHERE state = 'available' AND queue = :queue
  AND limit_name IS NULL
  AND NOT EXISTS (SELECT 1 FROM conveyor_queue_pauses WHERE queue = :queue)
  AND (group_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM conveyor_jobs AS other
      WHERE other.group_key = job.group_key AND other.id <> job.id
        AND other.state IN ('scheduled', 'available', 'running')
        AND (other.state = 'running' OR other.id < job.id)
  ))
ORDER BY priority, run_at, id
LIMIT :limit
