-- Arguments and results read back exactly as they were given on every backend.
-- SQLite already stores them as the JSON text written (TEXT checked by
-- json_valid), so nothing changes here; PostgreSQL moves them from jsonb to
-- json in its migration of the same number.
SELECT 1;
