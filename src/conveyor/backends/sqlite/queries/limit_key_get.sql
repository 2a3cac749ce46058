-- One key of a limit, for explaining a job's wait: its running jobs, the jobs
-- ahead of a given one, and its pause.
SELECT
    (SELECT count(*) FROM conveyor_jobs AS r WHERE r.state = 'running'
       AND r.limit_name IS NOT NULL AND r.limit_name = :name
       AND r.limit_key = :key AND r.lease_expires_at > :now) AS running,
    (SELECT count(*) FROM conveyor_jobs AS w WHERE w.state = 'available'
       AND w.limit_name IS NOT NULL AND w.limit_name = :name
       AND (w.priority, w.run_at, w.id) < (:priority, :run_at, :id)) AS ahead_in_limit,
    (SELECT count(*) FROM conveyor_jobs AS w WHERE w.state = 'available'
       AND w.limit_name IS NOT NULL AND w.limit_name = :name AND w.limit_key = :key
       AND (w.priority, w.run_at, w.id) < (:priority, :run_at, :id)) AS ahead_in_key,
    (SELECT max(0, coalesce(k.paused_until, 0) - :now) FROM conveyor_limit_keys AS k
       WHERE k.limit_name = :name AND k.key = :key) AS key_paused_for
