-- The first key of a limit after :after with an available job: one step of the
-- round-robin walk over keys (job_fetch_limits.sql); limit_first_key.sql starts it.
SELECT limit_key FROM conveyor_jobs
WHERE state = 'available' AND limit_name IS NOT NULL AND limit_name = :limit_name
  AND limit_key > :after
ORDER BY limit_name, limit_key
LIMIT 1
