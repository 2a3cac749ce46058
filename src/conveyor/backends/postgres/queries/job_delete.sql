DELETE FROM conveyor_jobs
WHERE state = ANY (%(states)s::text[])
  AND state IN ('succeeded', 'dead', 'cancelled')
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(ids)s::bigint[] IS NULL OR id = ANY (%(ids)s::bigint[]))
