-- Close an open incident (a closed one stays as it was: closing twice changes nothing).
UPDATE conveyor_incidents
SET closed_at = max(opened_at, coalesce(:at, :now)), closed_by = :closed_by,
    close_details = :details
WHERE id = :id AND closed_at IS NULL
RETURNING id
