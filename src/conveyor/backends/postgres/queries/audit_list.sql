-- Newest first; `before_id` is the page cursor, `actor` matches any part of the actor.
-- params as text: decoded by the same code as SQLite's.
SELECT id, extract(epoch FROM at)::float8 AS at, actor, source, action, target, count,
       params::text AS params
FROM conveyor_audit
WHERE (%(since)s::float8 IS NULL OR at >= to_timestamp(%(since)s::float8))
  AND (%(until)s::float8 IS NULL OR at < to_timestamp(%(until)s::float8))
  AND (%(actor)s::text IS NULL OR strpos(actor, %(actor)s::text) > 0)
  AND (%(action)s::text IS NULL OR action = %(action)s::text)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s::integer
