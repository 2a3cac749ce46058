DELETE FROM conveyor_job_stats
WHERE minute < now() - make_interval(secs => %(older_than)s::float8)
