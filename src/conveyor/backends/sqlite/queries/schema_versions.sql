SELECT version FROM conveyor_schema ORDER BY version
