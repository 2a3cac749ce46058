-- What a fetch leased of a limit: :used tokens from its bucket (refilled to :now
-- first; with :prefetched, it does not refill for the next :start_within seconds,
-- see the PostgreSQL job_fetch_limited.sql), and the cursor moves to the last key served.
UPDATE conveyor_limits
SET tokens = CASE WHEN rate IS NULL THEN tokens
                  ELSE min(burst, tokens + rate * max(0, :now - refreshed_at)) - :used END,
    refreshed_at = CASE WHEN rate IS NULL THEN refreshed_at
                        WHEN :prefetched THEN max(refreshed_at, :now + :start_within)
                        ELSE max(refreshed_at, :now) END,
    cursor_key = :cursor_key
WHERE name = :name
