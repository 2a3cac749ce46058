-- A batch of operational events in one statement: `events` is a JSON array of
-- {at (null: now), kind, subject, actor, details (JSON text)}.
INSERT INTO conveyor_events (at, kind, subject, actor, details)
SELECT coalesce(json_extract(value, '$.at'), :now), json_extract(value, '$.kind'),
       json_extract(value, '$.subject'), json_extract(value, '$.actor'),
       json_extract(value, '$.details')
FROM json_each(:events)
