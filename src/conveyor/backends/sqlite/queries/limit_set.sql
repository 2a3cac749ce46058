-- An operator's numbers for a limit (all of them, merged with the current ones by
-- the caller). They stick across deploys until `conveyor limits reset`. The fetch
-- reads them on its next round, so they take effect within one fetch interval.
UPDATE conveyor_limits
SET tokens = CASE WHEN :rate IS NULL THEN 0
                  WHEN rate IS NULL THEN :burst
                  ELSE min(tokens, :burst) END,
    rate = :rate, burst = :burst, concurrency = :concurrency,
    key_rate = :key_rate, key_burst = :key_burst, key_concurrency = :key_concurrency,
    overridden = 1, updated_at = :now
WHERE name = :name
RETURNING name
