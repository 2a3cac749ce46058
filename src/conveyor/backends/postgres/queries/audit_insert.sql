-- One audit entry, in the transaction of the action it records.
INSERT INTO conveyor_audit (actor, source, action, target, count, params)
VALUES (%(actor)s::text, %(source)s::text, %(action)s::text, %(target)s::text,
        %(count)s::bigint, %(params)s::jsonb)
RETURNING id
