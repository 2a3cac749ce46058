"""FastAPI integration: the Starlette helpers plus a typed dependency.

    from fastapi import FastAPI
    from conveyor.contrib.fastapi import ConveyorDep, conveyor_lifespan, mount_dashboard

    api = FastAPI(lifespan=conveyor_lifespan(app))
    mount_dashboard(api, app, "/conveyor")

    @api.post("/orders/{order_id}/receipt")
    async def receipt(order_id: int, jobs: ConveyorDep) -> dict[str, int]:
        job = await jobs.get_task("send_receipt").aenqueue(order_id)
        return {"job": job.id}
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from conveyor.app import Conveyor
from conveyor.contrib.starlette import (
    STATE_KEY,
    conveyor_lifespan,
    get_conveyor,
    mount_dashboard,
)

ConveyorDep = Annotated[Conveyor, Depends(get_conveyor)]
"""A handler parameter typed `ConveyorDep` receives the app opened by the lifespan."""

__all__ = ["STATE_KEY", "ConveyorDep", "conveyor_lifespan", "get_conveyor", "mount_dashboard"]
