-- A closed breaker row for the task, unless it has one.
INSERT INTO conveyor_breakers (task, window_started_at, changed_at)
VALUES (%(task)s::text, extract(epoch FROM now()), extract(epoch FROM now()))
ON CONFLICT (task) DO NOTHING
