-- Every host's spool, most recently reported first.
SELECT host, path, forwarded, depth, oldest_spooled_at, first_forward_at, reported_at
FROM conveyor_spool_hosts ORDER BY reported_at DESC, host, path LIMIT :limit
