INSERT INTO conveyor_schema (version, name, applied_at) VALUES (:version, :name, :now)
