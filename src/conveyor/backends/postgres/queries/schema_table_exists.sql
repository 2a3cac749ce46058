SELECT to_regclass('conveyor_schema') IS NOT NULL AS present
