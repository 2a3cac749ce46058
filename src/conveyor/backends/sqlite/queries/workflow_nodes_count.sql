-- Count resolved parents into their children: :counts is a JSON array of
-- {"child": id, "n": parents resolved, "f": of which did not succeed}.
UPDATE conveyor_workflow_nodes
SET waiting = waiting - c.n,
    failed = failed + c.f
FROM (SELECT json_extract(value, '$.child') AS child, json_extract(value, '$.n') AS n,
             json_extract(value, '$.f') AS f
      FROM json_each(:counts)) AS c
WHERE conveyor_workflow_nodes.job_id = c.child
