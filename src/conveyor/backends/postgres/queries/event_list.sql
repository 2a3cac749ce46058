-- Newest first; `kind` matches that kind or, as a prefix, its family ("worker" matches
-- "worker.started"); `before_id` is the page cursor. details as text: decoded by the
-- same code as SQLite's.
SELECT id, extract(epoch FROM at)::float8 AS at, kind, subject, actor, details::text AS details
FROM conveyor_events
WHERE (%(since)s::float8 IS NULL OR at >= to_timestamp(%(since)s::float8))
  AND (%(until)s::float8 IS NULL OR at < to_timestamp(%(until)s::float8))
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text
       OR left(kind, length(%(kind)s::text) + 1) = %(kind)s::text || '.')
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY at DESC, id DESC
LIMIT %(limit)s::integer
