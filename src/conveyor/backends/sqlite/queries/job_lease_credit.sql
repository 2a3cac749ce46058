-- Lease time runs only while the database accepts writes: after a stall of the single
-- writer (its holder stopped or starved), every running lease is extended by the stall,
-- since no worker could renew one meanwhile.
UPDATE conveyor_jobs
SET lease_expires_at = lease_expires_at + :seconds
WHERE state = 'running' AND lease_expires_at IS NOT NULL
