INSERT INTO conveyor_alerts (key, firing, changed_at, details)
VALUES (%(key)s::text, %(firing)s::boolean, now(), %(details)s::jsonb)
ON CONFLICT (key) DO UPDATE SET
    firing = excluded.firing, changed_at = excluded.changed_at, details = excluded.details
