DELETE FROM conveyor_leaders WHERE name = :name AND holder = :holder
