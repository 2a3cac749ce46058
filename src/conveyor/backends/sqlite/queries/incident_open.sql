-- A new incident; for an alert that already has an open one, nothing (no row returned).
INSERT INTO conveyor_incidents (opened_at, title, alert_key, opened_by, details)
VALUES (coalesce(:at, :now), :title, :alert_key, :opened_by, :details)
ON CONFLICT (alert_key) WHERE closed_at IS NULL AND alert_key IS NOT NULL DO NOTHING
RETURNING id
