"""Health probes have their own per-address bucket: never throttled by the API's limit."""

from __future__ import annotations

from typing import Any


def test_400_health_probes_are_answered_while_the_api_limit_still_applies(
    web_factory: Any,
) -> None:
    web = web_factory(rate_limit=20.0, rate_burst=100)  # the production defaults
    probes = [web.client.get("/api/v1/health").status_code for _ in range(400)]
    assert probes == [200] * 400
    # The same address's API budget is untouched by the probes, and still enforced.
    # (No token: the API limits the caller by address, then answers 401.)
    public = [web.client.get("/api/v1/jobs").status_code for _ in range(100)]
    assert public == [401] * 100
    limited = [web.client.get("/api/v1/jobs").status_code for _ in range(100)]
    assert 429 in limited  # the burst is spent (refilling at 20 a second meanwhile)
    assert web.client.get("/api/v1/health").status_code == 200
