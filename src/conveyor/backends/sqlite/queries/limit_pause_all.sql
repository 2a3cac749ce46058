-- Back-pressure for the whole limit (see limit_pause.sql).
UPDATE conveyor_limits
SET paused_until = max(coalesce(paused_until, :now), :now + :seconds), paused_reason = :reason
WHERE name = :name
RETURNING name
