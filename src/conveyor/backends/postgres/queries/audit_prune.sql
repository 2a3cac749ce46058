-- Entries older than the audit retention, oldest first, a bounded batch at a time.
DELETE FROM conveyor_audit
WHERE id IN (SELECT id FROM conveyor_audit
             WHERE at < now() - make_interval(secs => %(older_than)s::float8)
             ORDER BY at LIMIT %(limit)s::integer)
