-- A new incident; for an alert that already has an open one, nothing (no row returned).
INSERT INTO conveyor_incidents (opened_at, title, alert_key, opened_by, details)
VALUES (coalesce(to_timestamp(%(at)s::float8), now()), %(title)s::text, %(alert_key)s::text,
        %(opened_by)s::text, %(details)s::jsonb)
ON CONFLICT (alert_key) WHERE closed_at IS NULL AND alert_key IS NOT NULL DO NOTHING
RETURNING id
