-- Take the role when nobody holds it, its lease ran out, or we hold it (renewal).
-- No row comes back when someone else holds a live lease.
INSERT INTO conveyor_leaders (name, holder, expires_at) VALUES (:name, :holder, :now + :ttl)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE conveyor_leaders.holder = excluded.holder OR conveyor_leaders.expires_at < :now
RETURNING holder
