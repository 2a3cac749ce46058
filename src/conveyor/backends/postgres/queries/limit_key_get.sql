-- One key of a limit, for explaining a job's wait: its running jobs, the jobs
-- ahead of a given one, and its pause.
SELECT
    (SELECT count(*) FROM conveyor_jobs AS r WHERE r.state = 'running'
       AND r.limit_name IS NOT NULL AND r.limit_name = %(name)s::text
       AND r.limit_key = %(key)s::text AND r.lease_expires_at > now()) AS running,
    (SELECT count(*) FROM conveyor_jobs AS w WHERE w.state = 'available'
       AND w.limit_name IS NOT NULL AND w.limit_name = %(name)s::text
       AND (w.priority, w.run_at, w.id) < (%(priority)s::smallint, %(run_at)s::timestamptz, %(id)s::bigint)
    ) AS ahead_in_limit,
    (SELECT count(*) FROM conveyor_jobs AS w WHERE w.state = 'available'
       AND w.limit_name IS NOT NULL AND w.limit_name = %(name)s::text
       AND w.limit_key = %(key)s::text
       AND (w.priority, w.run_at, w.id) < (%(priority)s::smallint, %(run_at)s::timestamptz, %(id)s::bigint)
    ) AS ahead_in_key,
    (SELECT greatest(0, extract(epoch FROM k.paused_until - now())::float8)
       FROM conveyor_limit_keys AS k
       WHERE k.limit_name = %(name)s::text AND k.key = %(key)s::text) AS key_paused_for
