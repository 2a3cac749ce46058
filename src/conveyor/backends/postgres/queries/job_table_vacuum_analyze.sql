-- As job_table_vacuum, and refresh the planner's statistics of the table.
VACUUM (SKIP_LOCKED, TRUNCATE false, ANALYZE) conveyor_jobs
