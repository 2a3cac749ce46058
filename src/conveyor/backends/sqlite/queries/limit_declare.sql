-- A limit as declared in code. A new limit starts with a full bucket; a declared
-- one takes the new numbers unless an operator set them (`conveyor limits set`),
-- and keeps its bucket (never more than the new burst).
INSERT INTO conveyor_limits AS l
    (name, rate, burst, concurrency, key_rate, key_burst, key_concurrency, queue, tokens,
     refreshed_at, updated_at)
VALUES (:name, :rate, :burst, :concurrency, :key_rate, :key_burst, :key_concurrency, :queue,
        coalesce(:burst, 0), :now, :now)
ON CONFLICT (name) DO UPDATE
SET rate = excluded.rate, burst = excluded.burst, concurrency = excluded.concurrency,
    key_rate = excluded.key_rate, key_burst = excluded.key_burst,
    key_concurrency = excluded.key_concurrency, queue = excluded.queue,
    tokens = min(l.tokens, coalesce(excluded.burst, 0)), updated_at = excluded.updated_at
WHERE NOT l.overridden
  AND (l.rate, l.burst, l.concurrency, l.key_rate, l.key_burst, l.key_concurrency, l.queue)
      IS NOT (excluded.rate, excluded.burst, excluded.concurrency, excluded.key_rate,
              excluded.key_burst, excluded.key_concurrency, excluded.queue)
