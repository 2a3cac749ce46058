-- A client-chosen id per job (a uuid), unique: after an ambiguous enqueue failure
-- the client looks its jobs up by it, and a forward from the local spool retried
-- after an ambiguous failure never stores a job twice. NULL for older rows.
ALTER TABLE conveyor_jobs ADD COLUMN client_id TEXT;
CREATE UNIQUE INDEX conveyor_jobs_client_id ON conveyor_jobs (client_id)
    WHERE client_id IS NOT NULL;
