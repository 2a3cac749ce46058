DELETE FROM conveyor_job_stats WHERE minute < :now - :older_than
