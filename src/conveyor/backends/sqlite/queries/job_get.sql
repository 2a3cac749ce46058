SELECT * FROM conveyor_jobs WHERE id = :job_id
