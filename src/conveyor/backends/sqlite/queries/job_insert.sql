INSERT INTO conveyor_jobs (
    task, queue, args, state, priority, run_at, max_attempts,
    idempotency_key, idempotency_window, group_key, timeout, created_at, tags, trace_context,
    client_id, limit_name, limit_key
) VALUES (
    :task, :queue, :args,
    CASE WHEN :run_at > :now THEN 'scheduled' ELSE 'available' END,
    :priority, max(:run_at, :now), :max_attempts,
    :idempotency_key, :idempotency_window, :group_key, :timeout, :now, :tags, :trace_context,
    :client_id, :limit_name, :limit_key
)
ON CONFLICT (task, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, state
