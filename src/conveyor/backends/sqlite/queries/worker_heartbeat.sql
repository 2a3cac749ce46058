INSERT INTO conveyor_workers
    (id, hostname, pid, queues, concurrency, started_at, last_heartbeat_at, running, meta)
VALUES (:id, :hostname, :pid, :queues, :concurrency, :started_at, :now, :running, :meta)
ON CONFLICT (id) DO UPDATE SET
    last_heartbeat_at = excluded.last_heartbeat_at,
    running = excluded.running,
    meta = excluded.meta
