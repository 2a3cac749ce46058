-- A spool forwarder's report after a batch the database confirmed: jobs delivered
-- (added up) and what its spool still held.
INSERT INTO conveyor_spool_hosts AS h (host, path, forwarded, depth, oldest_spooled_at)
VALUES (%(host)s::text, %(path)s::text, %(forwarded)s::bigint, %(depth)s::bigint,
        to_timestamp(%(oldest)s::float8))
ON CONFLICT (host, path) DO UPDATE SET
    forwarded = h.forwarded + excluded.forwarded,
    depth = excluded.depth,
    oldest_spooled_at = excluded.oldest_spooled_at,
    reported_at = now()
