-- Arguments and results are stored as `json` (the text as written) instead of
-- `jsonb`, so they read back exactly as they were given: jsonb normalises
-- numbers (1e16 read back as the int 10000000000000000, -0.0 as 0.0). Nothing
-- queries inside them; errors, tags and the other JSON columns stay jsonb.
-- Rows already stored keep the values jsonb made of them.
--
-- The column change rewrites conveyor_jobs under an exclusive lock: on a large
-- table, run it when workers are stopped or the table is small (after pruning).
ALTER TABLE conveyor_jobs DROP CONSTRAINT IF EXISTS conveyor_jobs_args_check;

ALTER TABLE conveyor_jobs
    ALTER COLUMN args TYPE json USING args::json,
    ALTER COLUMN result TYPE json USING result::json;

ALTER TABLE conveyor_jobs ADD CONSTRAINT conveyor_jobs_args_check
    CHECK (json_typeof(args) = 'array');

INSERT INTO conveyor_schema (version, name) VALUES (6, '0006_exact_json.sql');
