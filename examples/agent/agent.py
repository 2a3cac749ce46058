"""A research agent as one durable job: plan, fan out tool calls, fan in, wait for a
person's approval, answer.

    CONVEYOR_URL=sqlite:///agent.db AGENT_SERVICES=http://127.0.0.1:8765 \\
        conveyor worker agent:app

Every call to the model or a tool is a step: its answer is stored when it comes
back, so when the worker is killed and the job runs again, the calls that
finished are not made (nor paid for) again. The tool calls of one plan run
concurrently, as steps of one job. The model and tools fail and rate-limit now
and then: each step retries them itself, with backoff.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from conveyor import Conveyor, JobContext, Retry

app = Conveyor(os.environ.get("CONVEYOR_URL", "sqlite:///agent.db"), poll_interval=0.1,
               lease=2.0)
SERVICES = os.environ.get("AGENT_SERVICES", "http://127.0.0.1:8765")
BACKOFF = Retry(base=0.05, cap=0.5)


class ServiceError(Exception):
    """The model or a tool failed (a 5xx, a 429, or no answer)."""


def _post(path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    if not SERVICES.startswith(("http://", "https://")):
        raise ValueError(f"AGENT_SERVICES must be an http(s) URL, got {SERVICES!r}")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        SERVICES + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        if exc.code == 429:
            time.sleep(float(exc.headers.get("Retry-After", "0.1")))
        raise ServiceError(f"{path} answered {exc.code}") from None
    except OSError as exc:
        raise ServiceError(f"{path}: {exc}") from None


async def model(key: str, prompt: str) -> dict[str, Any]:
    return await asyncio.to_thread(_post, "/model", key, {"prompt": prompt})


async def search(key: str, query: str) -> dict[str, Any]:
    return await asyncio.to_thread(_post, "/tool/search", key, {"query": query})


@app.task(name="research", max_attempts=20)
async def research(ctx: JobContext, question: str) -> dict[str, Any]:
    key = f"job{ctx.id}"
    plan = await ctx.step("plan", model, f"{key}/plan", f"plan: {question}",
                          attempts=10, retry=BACKOFF, retry_on=ServiceError)
    ctx.progress(0.2, "planned")
    queries: list[str] = plan["text"]
    # Fan out: one step per tool call, run concurrently; fan in with gather.
    found = await asyncio.gather(*[
        ctx.step(f"search-{i}", search, f"{key}/search-{i}", q,
                 attempts=10, retry=BACKOFF, retry_on=ServiceError)
        for i, q in enumerate(queries)
    ])
    ctx.progress(0.6, "searched")
    hits = [hit for result in found for hit in result["hits"]]
    draft = await ctx.step("draft", model, f"{key}/draft", f"summarize {hits}",
                           attempts=10, retry=BACKOFF, retry_on=ServiceError)
    ctx.progress(0.8, "waiting for approval")
    ctx.set_metadata(draft_call=draft["call"])
    approval = ctx.wait_for("approval", timeout=3600)  # gives the slot back
    if not approval.get("approved"):
        return {"question": question, "answer": None, "rejected": approval.get("reason")}
    final = await ctx.step("final", model, f"{key}/final", f"final: {draft['text']}",
                           attempts=10, retry=BACKOFF, retry_on=ServiceError)
    ctx.progress(1.0, "done")
    return {"question": question, "answer": final["text"], "sources": hits}
