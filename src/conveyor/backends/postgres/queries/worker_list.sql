SELECT id, hostname, pid, queues, concurrency,
       extract(epoch FROM started_at)::float8 AS started_at,
       extract(epoch FROM last_heartbeat_at)::float8 AS last_heartbeat_at,
       running, meta
FROM conveyor_workers
WHERE last_heartbeat_at >= now() - make_interval(secs => %(alive_within)s::float8)
ORDER BY started_at
