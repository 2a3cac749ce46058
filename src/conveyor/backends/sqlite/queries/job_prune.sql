DELETE FROM conveyor_jobs
WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE state IN ('succeeded', 'cancelled') AND finished_at < :now - :older_than
    LIMIT :limit
)
RETURNING id
