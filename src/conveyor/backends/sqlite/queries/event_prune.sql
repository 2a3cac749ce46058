-- Events older than the event retention, oldest first, a bounded batch at a time.
DELETE FROM conveyor_events
WHERE id IN (SELECT id FROM conveyor_events WHERE at < :now - :older_than ORDER BY at LIMIT :limit)
