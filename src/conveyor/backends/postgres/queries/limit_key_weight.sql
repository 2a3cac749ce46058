-- A key's weight as declared (app.limit(..., weights={key: w})): w jobs per round.
INSERT INTO conveyor_limit_keys AS k (limit_name, key, weight)
VALUES (%(name)s::text, %(key)s::text, %(weight)s::integer)
ON CONFLICT (limit_name, key) DO UPDATE SET weight = excluded.weight
