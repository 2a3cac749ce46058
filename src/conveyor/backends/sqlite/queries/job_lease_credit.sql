-- Lease time runs only while the database accepts writes: after a stall of the single
-- writer (its holder stopped or starved), every lease that was still running when the
-- stall began is extended by the stall, since no worker could renew one meanwhile. A
-- lease that had run out before it was not renewed in time anyway: it gets nothing.
UPDATE conveyor_jobs
SET lease_expires_at = lease_expires_at + :seconds
WHERE state = 'running' AND lease_expires_at >= :stall_began
