-- Keys take turns round-robin from a cursor (docs/flow-control.md): each limit
-- remembers the last key a fetch served, and the next fetch walks the keys with
-- work from there, wrapping around. A fetch visits only the keys it serves, not
-- every key with work, and writes a key's row only when the key has its own rate.
-- The turn numbers that ordered keys before are dropped with their index.
ALTER TABLE conveyor_limits ADD COLUMN cursor_key text;
DROP INDEX conveyor_limit_keys_turn;
ALTER TABLE conveyor_limit_keys DROP COLUMN turn;
DROP SEQUENCE conveyor_limit_turns;

INSERT INTO conveyor_schema (version, name) VALUES (19, '0019_limit_cursor.sql');
