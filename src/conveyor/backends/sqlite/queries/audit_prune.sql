-- Entries older than the audit retention, oldest first, a bounded batch at a time.
DELETE FROM conveyor_audit
WHERE id IN (SELECT id FROM conveyor_audit WHERE at < :now - :older_than ORDER BY at LIMIT :limit)
