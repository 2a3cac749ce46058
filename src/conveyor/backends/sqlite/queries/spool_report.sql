-- A spool forwarder's report after a batch the database confirmed: jobs delivered
-- (added up) and what its spool still held.
INSERT INTO conveyor_spool_hosts
    (host, path, forwarded, depth, oldest_spooled_at, first_forward_at, reported_at)
VALUES (:host, :path, :forwarded, :depth, :oldest, :now, :now)
ON CONFLICT (host, path) DO UPDATE SET
    forwarded = forwarded + excluded.forwarded,
    depth = excluded.depth,
    oldest_spooled_at = excluded.oldest_spooled_at,
    reported_at = excluded.reported_at
