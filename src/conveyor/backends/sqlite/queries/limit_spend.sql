-- Take :used tokens from a limit's bucket, refilled to :now first.
UPDATE conveyor_limits
SET tokens = min(burst, tokens + rate * (:now - refreshed_at)) - :used, refreshed_at = :now
WHERE name = :name AND rate IS NOT NULL
