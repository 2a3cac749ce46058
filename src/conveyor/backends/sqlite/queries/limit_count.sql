-- Whether any limit is declared (a fetch without limits skips the limited part).
SELECT count(*) FROM conveyor_limits
