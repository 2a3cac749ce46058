-- How much of the job table is dead row versions (left by the updates of every
-- transition and by pruning), and how much changed since it was last analysed.
-- The statistics collector's counts: approximate, and cheap to read.
SELECT coalesce(n_dead_tup, 0)::bigint AS dead,
       coalesce(n_live_tup, 0)::bigint AS live,
       coalesce(n_mod_since_analyze, 0)::bigint AS modified
FROM pg_stat_user_tables
WHERE relid = 'conveyor_jobs'::regclass
