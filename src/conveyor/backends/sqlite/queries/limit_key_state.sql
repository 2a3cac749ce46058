-- One key the fetch visits: its weight, its bucket refilled to :now (a key never
-- seen has a full one; NULL without a per-key rate), whether it is paused, and its
-- running jobs whose lease is live (counted only under a per-key concurrency).
SELECT coalesce(k.weight, 1) AS weight,
       CASE WHEN :key_rate IS NULL THEN NULL ELSE min(
           :key_burst,
           coalesce(k.tokens, :key_burst) + :key_rate * (:now - coalesce(k.refreshed_at, :now)))
       END AS tokens,
       coalesce(k.paused_until > :now, 0) AS paused,
       CASE WHEN :key_concurrency IS NULL THEN NULL ELSE (
           SELECT count(*) FROM conveyor_jobs AS r
           WHERE r.state = 'running' AND r.limit_name IS NOT NULL
             AND r.limit_name = :limit_name AND r.limit_key = :limit_key
             AND r.lease_expires_at > :now) END AS running
FROM (SELECT 1) AS one
LEFT JOIN conveyor_limit_keys AS k ON k.limit_name = :limit_name AND k.key = :limit_key
