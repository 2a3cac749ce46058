-- End the session an ambiguous insert was sent on and wait (up to 1 s) for it to be
-- gone, so a write still in flight cannot commit after the look-up answered.
SELECT pg_terminate_backend(pid, 1000) AS stopped FROM pg_stat_activity
WHERE pid = %(pid)s::integer AND pid <> pg_backend_pid()
