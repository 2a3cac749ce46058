"""A FastAPI app that enqueues conveyor jobs and serves conveyor's dashboard.

Run it (from this folder, in the project's virtual environment):

    CONVEYOR_URL=sqlite:///shop.db uvicorn shop:api          # the web app
    CONVEYOR_URL=sqlite:///shop.db conveyor worker shop:app  # a worker beside it

Then `POST /orders/7/receipt` enqueues a job, `GET /jobs/{id}` shows it, and the
dashboard is at /conveyor/ (sign in with a token from `conveyor tokens create`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException

from conveyor import Conveyor
from conveyor.contrib.fastapi import ConveyorDep, conveyor_lifespan, mount_dashboard

app = Conveyor()  # CONVEYOR_URL, or sqlite:///conveyor.db


@app.task(queue="mail")
def send_receipt(order_id: int) -> str:
    return f"receipt for order {order_id} sent"


api = FastAPI(lifespan=conveyor_lifespan(app, migrate=True))
mount_dashboard(api, app, "/conveyor")


@api.post("/orders/{order_id}/receipt", status_code=202)
async def receipt(order_id: int, jobs: ConveyorDep) -> dict[str, Any]:
    job = await jobs.get_task("send_receipt").aenqueue(order_id)
    return {"job": job.id, "state": str(job.state)}


@api.get("/jobs/{job_id}")
async def job_state(job_id: int, jobs: ConveyorDep) -> dict[str, Any]:
    job = jobs.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return {"job": job.id, "state": str(job.state), "result": job.record.result}
