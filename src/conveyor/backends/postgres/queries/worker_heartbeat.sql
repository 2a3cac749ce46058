INSERT INTO conveyor_workers
    (id, hostname, pid, queues, concurrency, started_at, last_heartbeat_at, running, meta)
VALUES (%(id)s::text, %(hostname)s::text, %(pid)s::integer, %(queues)s::text[],
        %(concurrency)s::integer, to_timestamp(%(started_at)s::float8), now(),
        %(running)s::integer, %(meta)s::jsonb)
ON CONFLICT (id) DO UPDATE SET
    last_heartbeat_at = excluded.last_heartbeat_at,
    running = excluded.running,
    meta = excluded.meta
