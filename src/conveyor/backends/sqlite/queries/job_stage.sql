-- Scheduled jobs whose time has come become available (runs inside each fetch).
UPDATE conveyor_jobs SET state = 'available'
WHERE state = 'scheduled' AND run_at <= :now
