-- Up to :limit available jobs of one key of a limit in the worker's queues, in
-- queue order; a paused queue and an ordering group's later jobs wait, as in
-- job_fetch_candidates.sql. held_back: a job a dead worker held without starting
-- it goes only to a free slot, never into a prefetch.
SELECT id, uncounted_rescues > 0 AS held_back FROM conveyor_jobs AS job
WHERE state = 'available' AND limit_name IS NOT NULL
  AND limit_name = :limit_name AND limit_key = :limit_key
  AND queue IN (SELECT value FROM json_each(:queues))
  AND NOT EXISTS (SELECT 1 FROM conveyor_queue_pauses AS p WHERE p.queue = job.queue)
  AND (group_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM conveyor_jobs AS other
      WHERE other.group_key = job.group_key AND other.id <> job.id
        AND other.state IN ('scheduled', 'available', 'running')
        AND (other.state = 'running' OR other.id < job.id)
  ))
ORDER BY priority, run_at, id
LIMIT :limit
