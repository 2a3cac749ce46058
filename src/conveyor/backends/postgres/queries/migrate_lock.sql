-- Serialise `conveyor migrate` across hosts: the lock is held until the
-- migration transaction ends, so a second migrator waits, then finds nothing to do.
-- The key is "conveyor" in ASCII; any fixed bigint would do.
SELECT pg_advisory_xact_lock(7165066986957401970)
