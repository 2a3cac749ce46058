-- Take the role when nobody holds it, its lease ran out, or we hold it (renewal).
-- No row comes back when someone else holds a live lease. The database's clock decides.
INSERT INTO conveyor_leaders AS leader (name, holder, expires_at)
VALUES (%(name)s::text, %(holder)s::text, now() + make_interval(secs => %(ttl)s::float8))
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leader.holder = excluded.holder OR leader.expires_at < now()
RETURNING holder
