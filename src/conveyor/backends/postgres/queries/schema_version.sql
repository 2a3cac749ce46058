SELECT max(version) AS version FROM conveyor_schema
