-- Every host's spool, most recently reported first.
SELECT host, path, forwarded, depth,
       extract(epoch FROM oldest_spooled_at)::float8 AS oldest_spooled_at,
       extract(epoch FROM first_forward_at)::float8 AS first_forward_at,
       extract(epoch FROM reported_at)::float8 AS reported_at
FROM conveyor_spool_hosts ORDER BY reported_at DESC, host, path LIMIT %(limit)s::integer
