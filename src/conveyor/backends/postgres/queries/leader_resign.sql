DELETE FROM conveyor_leaders WHERE name = %(name)s::text AND holder = %(holder)s::text
