-- conveyor schema 19 for SQLite: keys take turns round-robin from a cursor (see
-- the PostgreSQL migration of the same number). The key table's turn column
-- stays (SQLite drops a column only by rebuilding the table on older versions),
-- but nothing reads or writes it; its index goes.
ALTER TABLE conveyor_limits ADD COLUMN cursor_key TEXT;
DROP INDEX conveyor_limit_keys_turn;
