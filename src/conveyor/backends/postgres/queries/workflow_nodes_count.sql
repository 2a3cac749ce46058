-- Count resolved parents into their children: counts is a JSON array of
-- {"child": id, "n": parents resolved, "f": of which did not succeed}. Nodes are
-- locked in id order first, so two completions sharing children cannot deadlock;
-- the decrement reads the row as the other's commit left it (READ COMMITTED).
WITH c AS (
    SELECT * FROM jsonb_to_recordset(%(counts)s::jsonb) AS given(child bigint, n integer, f integer)
),
locked AS MATERIALIZED (
    SELECT node.job_id FROM conveyor_workflow_nodes AS node
    WHERE node.job_id IN (SELECT child FROM c)
    ORDER BY node.job_id
    FOR UPDATE
)
UPDATE conveyor_workflow_nodes AS node
SET waiting = node.waiting - c.n,
    failed = node.failed + c.f
FROM c, locked
WHERE node.job_id = c.child AND locked.job_id = c.child
