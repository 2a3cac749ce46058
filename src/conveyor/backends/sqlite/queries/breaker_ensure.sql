-- A closed breaker row for the task, unless it has one.
INSERT INTO conveyor_breakers (task, window_started_at, changed_at) VALUES (:task, :now, :now)
ON CONFLICT (task) DO NOTHING
