-- An operator's numbers for a limit (all of them, merged with the current ones by
-- the caller). They stick across deploys until `conveyor limits reset`. The fetch
-- reads them on its next round, so they take effect within one fetch interval.
UPDATE conveyor_limits AS l
SET rate = %(rate)s::float8, burst = %(burst)s::float8, concurrency = %(concurrency)s::integer,
    key_rate = %(key_rate)s::float8, key_burst = %(key_burst)s::float8,
    key_concurrency = %(key_concurrency)s::integer,
    tokens = CASE WHEN %(rate)s::float8 IS NULL THEN 0
                  WHEN l.rate IS NULL THEN %(burst)s::float8
                  ELSE least(l.tokens, %(burst)s::float8) END,
    overridden = true,
    updated_at = now()
WHERE l.name = %(name)s::text
RETURNING l.name
