-- The first key of a limit with an available job (the walk's wrap, see
-- limit_next_key.sql).
SELECT limit_key FROM conveyor_jobs
WHERE state = 'available' AND limit_name IS NOT NULL AND limit_name = :limit_name
ORDER BY limit_name, limit_key
LIMIT 1
