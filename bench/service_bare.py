"""The bare-endpoint baseline of `make bench`: a FastAPI app that answers a constant, served like `taas api`.

`GET /v1/jobs/{job_id}` is the floor for the API line (FastAPI routing, uvicorn, JSON; `/sync/v1/jobs/{job_id}`
answers the same from a sync endpoint, for context); `POST
/internal/jobs/{job_id}/metrics` parses the same pydantic body the real metrics route does and answers the same
constant, the floor for the metric-ingest line. Both are `async def`: the cheapest a FastAPI endpoint gets.

    python -m bench.service_bare --port 8123 --workers 2
"""

import argparse

from fastapi import FastAPI, Request
from pydantic import BaseModel

app = FastAPI(title="bare")

CONSTANT = {"id": "job_bare", "status": "queued"}


class MetricsIn(BaseModel):
    attempt: int
    epoch: int
    metrics: dict[str, float | None]


@app.get("/healthz")
async def healthz() -> dict:
    return {"ok": True}


@app.get("/v1/jobs/{job_id}")
async def get_job(job_id: str) -> dict:
    return CONSTANT


@app.get("/sync/v1/jobs/{job_id}")
def get_job_sync(job_id: str) -> dict:
    """The same constant from a plain `def`: FastAPI runs it in a worker thread (context for the API line)."""
    return CONSTANT


@app.post("/internal/jobs/{job_id}/metrics")
async def metrics(job_id: str, body: MetricsIn) -> dict:
    return {"ok": True}


@app.post("/upload-sink")
async def upload_sink(request: Request) -> dict:
    """Reads a request body and drops it: what uvicorn and the client alone cost for an upload."""
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return {"bytes": n}


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    # The same uvicorn settings as `taas api` (app/cli.py): default loop/http (uvloop, httptools), no access log.
    uvicorn.run("bench.service_bare:app", host=args.host, port=args.port, workers=args.workers, log_level="info",
                access_log=False)


if __name__ == "__main__":
    main()
