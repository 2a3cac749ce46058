-- A batch of operational events in one statement: `events` is a JSON array of
-- {at (null: now), kind, subject, actor, details (JSON text)}.
INSERT INTO conveyor_events (at, kind, subject, actor, details)
SELECT coalesce(to_timestamp((e->>'at')::float8), now()), e->>'kind', e->>'subject',
       e->>'actor', (e->>'details')::jsonb
FROM jsonb_array_elements(%(events)s::jsonb) AS e
