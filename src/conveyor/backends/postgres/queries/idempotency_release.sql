-- A finished job holds its idempotency key for the window only; then the key is free again.
UPDATE conveyor_jobs
SET idempotency_key = NULL
WHERE task = %(task)s::text
  AND idempotency_key = %(idempotency_key)s::text
  AND idempotency_expires_at IS NOT NULL
  AND idempotency_expires_at <= now()
