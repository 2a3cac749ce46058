UPDATE conveyor_api_tokens SET last_used_at = :now WHERE id = :id
