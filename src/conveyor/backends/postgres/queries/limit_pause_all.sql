-- Back-pressure for the whole limit (see limit_pause.sql).
UPDATE conveyor_limits AS l
SET paused_until = greatest(coalesce(l.paused_until, now()),
                            now() + make_interval(secs => %(seconds)s::float8)),
    paused_reason = %(reason)s::text
WHERE l.name = %(name)s::text
RETURNING l.name
