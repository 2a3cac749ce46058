-- Close an open incident (a closed one stays as it was: closing twice changes nothing).
UPDATE conveyor_incidents
SET closed_at = greatest(opened_at, coalesce(to_timestamp(%(at)s::float8), now())),
    closed_by = %(closed_by)s::text, close_details = %(details)s::jsonb
WHERE id = %(id)s::bigint AND closed_at IS NULL
RETURNING id
