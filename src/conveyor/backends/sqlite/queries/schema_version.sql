SELECT max(version) FROM conveyor_schema
