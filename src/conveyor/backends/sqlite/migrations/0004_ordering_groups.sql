-- conveyor schema 4 for SQLite: ordering groups.
--
-- Jobs enqueued with the same group key run one at a time, in the order they
-- were enqueued. The fetch asks, for each candidate with a group, whether the
-- group has a running job or an earlier unfinished one; this index answers
-- that from the unfinished rows alone.
CREATE INDEX conveyor_jobs_group ON conveyor_jobs (group_key, id)
    WHERE group_key IS NOT NULL AND state IN ('scheduled', 'available', 'running');
