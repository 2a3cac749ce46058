-- Hand a limit back to its declaration: the next worker or app that declares it
-- sets its numbers again.
UPDATE conveyor_limits SET overridden = 0, updated_at = :now WHERE name = :name RETURNING name
