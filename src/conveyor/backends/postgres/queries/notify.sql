-- One notification per transaction (NOTIFY takes a global lock at commit), sent
-- inside the enqueuing transaction so listeners hear of it only if it commits.
-- The payload names the queues that got work; listeners may ignore it.
SELECT pg_notify('conveyor_jobs', %(queues)s::text)
