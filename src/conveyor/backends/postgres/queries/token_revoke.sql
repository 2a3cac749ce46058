UPDATE conveyor_api_tokens SET revoked_at = now()
WHERE id = %(id)s::bigint AND revoked_at IS NULL
RETURNING id
