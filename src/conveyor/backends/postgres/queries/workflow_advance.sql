-- One level of a workflow's advance in one statement (SQLite runs the four steps
-- one by one): the parents in ids just ended (those in succeeded, successfully);
-- resolve their edges once, count them into their children (locked in id order,
-- so two completions sharing children cannot deadlock; the decrement reads the
-- row as the other's commit left it), then cancel the children that can no
-- longer run and release those whose parents are all done, as runs_when says.
-- A waiting node is 'scheduled' at 253402128000 = 9999-12-30.
WITH resolved AS (
    UPDATE conveyor_workflow_edges
    SET resolved = true
    WHERE parent_id = ANY(%(ids)s::bigint[]) AND NOT resolved
    RETURNING parent_id, child_id
),
c AS (
    SELECT child_id AS child, count(*)::integer AS n,
           (count(*) FILTER (WHERE NOT (parent_id = ANY(%(succeeded)s::bigint[]))))::integer AS f
    FROM resolved
    GROUP BY child_id
),
locked AS MATERIALIZED (
    SELECT node.job_id FROM conveyor_workflow_nodes AS node
    WHERE node.job_id IN (SELECT child FROM c)
    ORDER BY node.job_id
    FOR UPDATE
),
counted AS (
    UPDATE conveyor_workflow_nodes AS node
    SET waiting = node.waiting - c.n,
        failed = node.failed + c.f
    FROM c, locked
    WHERE node.job_id = c.child AND locked.job_id = c.child
    RETURNING node.job_id, node.waiting, node.failed, node.runs_when
),
cancelled AS (
    UPDATE conveyor_jobs AS job
    SET state = 'cancelled',
        finished_at = now(),
        idempotency_expires_at = CASE WHEN job.idempotency_key IS NULL THEN NULL
                                      ELSE now() + make_interval(secs => job.idempotency_window) END
    FROM counted
    WHERE job.id = counted.job_id
      AND ((counted.runs_when = 'succeeded' AND counted.failed > 0)
           OR (counted.runs_when = 'failed' AND counted.waiting = 0 AND counted.failed = 0))
      AND job.state = 'scheduled' AND job.run_at >= to_timestamp(253402128000)
    RETURNING job.id, job.queue
),
released AS (
    UPDATE conveyor_jobs AS job
    SET state = 'available',
        run_at = now()
    FROM counted
    WHERE job.id = counted.job_id
      AND counted.waiting = 0
      AND NOT (counted.runs_when = 'succeeded' AND counted.failed > 0)
      AND NOT (counted.runs_when = 'failed' AND counted.failed = 0)
      AND job.state = 'scheduled' AND job.run_at >= to_timestamp(253402128000)
    RETURNING job.id, job.queue
)
SELECT 'cancelled' AS outcome, id, queue FROM cancelled
UNION ALL
SELECT 'released' AS outcome, id, queue FROM released
