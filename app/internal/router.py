"""Worker-facing routes under /internal, authenticated by the worker token; not in the public OpenAPI."""

import json
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from app import bodies
from app.db import get_sessionmaker
from app.deps import SessionDep, WorkerDep
from app.errors import Invalid, NotFound
from app.internal import service
from app.jobs import outbox
from app.models import Dataset, Job
from app.storage import BlobWriter, get_storage
from core.limits import INT4_MAX

router = APIRouter(prefix="/internal", dependencies=[WorkerDep], include_in_schema=False)
MAX_ARTIFACT = 4 * 1024**3
FORMATS = ("safetensors", "onnx", "config")


class ClaimIn(BaseModel):
    worker: str = Field("worker", max_length=200)


DbInt = Annotated[int, Field(ge=0, le=INT4_MAX)]


class Fenced(BaseModel):
    attempt: DbInt


class MetricsIn(Fenced):
    epoch: DbInt
    metrics: dict[str, float | None]


class EventIn(Fenced):
    key: str = Field(max_length=80)
    message: str
    data: dict[str, Any] | None = None


class SucceedIn(Fenced):
    result: dict[str, Any]


class FailIn(Fenced):
    code: str = "training_error"
    message: str


@router.post("/jobs/{job_id}/claim")
def claim(job_id: str, body: ClaimIn, session: SessionDep) -> dict:
    return service.claim(session=session, job_id=job_id, worker=body.worker)


@router.post("/jobs/{job_id}/heartbeat")
def heartbeat(job_id: str, body: Fenced, session: SessionDep) -> dict:
    return service.heartbeat(session=session, job_id=job_id, attempt=body.attempt)


@router.post("/jobs/{job_id}/metrics")
def metrics(job_id: str, body: MetricsIn, session: SessionDep) -> dict:
    service.record_metrics(session=session, job_id=job_id, attempt=body.attempt, epoch=body.epoch,
                           values=body.metrics)
    return {"ok": True}


@router.post("/jobs/{job_id}/events")
def event(job_id: str, body: EventIn, session: SessionDep) -> dict:
    service.record_event(session=session, job_id=job_id, attempt=body.attempt, key=body.key,
                         message=body.message, data=body.data)
    return {"ok": True}


def _meta(raw: str | None) -> dict | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        value = None
    return value if isinstance(value, dict) else None


async def _receive(request: Request, key: str) -> BlobWriter:
    """Stream a request body into storage under key (committed atomically)."""
    writer = await anyio.to_thread.run_sync(get_storage().writer, key)
    try:
        await bodies.stream_body(request, writer.write, cap=MAX_ARTIFACT)
        await anyio.to_thread.run_sync(writer.commit)
    except BaseException:
        await anyio.to_thread.run_sync(writer.abort)
        raise
    return writer


@router.put("/jobs/{job_id}/artifacts/{fmt}")
async def upload_artifact(job_id: str, fmt: str, attempt: Annotated[int, Query(ge=0, le=INT4_MAX)], request: Request,
                          meta: str | None = None) -> dict:
    """Stream the file to storage, then record it (fenced by attempt)."""
    if fmt not in FORMATS:
        raise Invalid(f"unknown artifact format {fmt}", code="invalid_format")
    key = f"jobs/{job_id}/a{attempt}/{fmt}"
    writer = await _receive(request, key)

    def record() -> None:
        with get_sessionmaker()() as session:
            service.attach_artifact(session=session, job_id=job_id, attempt=attempt, fmt=fmt, blob_key=key,
                                    size=writer.bytes, sha256=writer.sha256, meta=_meta(meta))

    await anyio.to_thread.run_sync(record)
    return {"sha256": writer.sha256, "bytes": writer.bytes}


@router.post("/jobs/{job_id}/release")
def release(job_id: str, body: Fenced, session: SessionDep) -> dict:
    service.release(session=session, job_id=job_id, attempt=body.attempt)
    outbox.send(session, job_id)  # another worker may take it at once
    return {"ok": True}


@router.put("/jobs/{job_id}/checkpoint")
async def upload_checkpoint(job_id: str, attempt: Annotated[int, Query(ge=0, le=INT4_MAX)],
                            epoch: Annotated[int, Query(ge=0, le=INT4_MAX)], request: Request) -> dict:
    """Store a checkpoint atomically, then (same transaction) the epoch's metrics from X-Taas-Metrics."""
    raw = request.headers.get("x-taas-metrics")
    try:
        values = json.loads(raw) if raw else None
        if values is not None and not isinstance(values, dict):
            raise ValueError
    except ValueError:
        raise Invalid("X-Taas-Metrics must be a JSON object", code="invalid_metrics") from None
    key = f"jobs/{job_id}/checkpoints/a{attempt}-e{epoch}.pt"
    writer = await _receive(request, key)

    def record() -> None:
        with get_sessionmaker()() as session:
            try:
                service.store_checkpoint(session=session, job_id=job_id, attempt=attempt, epoch=epoch, blob_key=key,
                                         sha256=writer.sha256, values=values)
            except BaseException:
                get_storage().delete(key)  # never committed: nothing refers to it
                raise

    await anyio.to_thread.run_sync(record)
    return {"sha256": writer.sha256, "bytes": writer.bytes}


@router.get("/jobs/{job_id}/checkpoint")
def download_checkpoint(job_id: str, session: SessionDep) -> FileResponse:
    job = session.get(Job, job_id)
    if job is None or job.checkpoint_key is None:
        raise NotFound("no checkpoint", code="checkpoint_not_found")
    return FileResponse(get_storage().path(job.checkpoint_key), headers={"X-Checksum-SHA256": job.checkpoint_sha256})


@router.post("/jobs/{job_id}/succeed")
def succeed(job_id: str, body: SucceedIn, session: SessionDep) -> dict:
    return {"model_id": service.succeed(session=session, job_id=job_id, attempt=body.attempt, result=body.result)}


@router.post("/jobs/{job_id}/fail")
def fail(job_id: str, body: FailIn, session: SessionDep) -> dict:
    service.fail(session=session, job_id=job_id, attempt=body.attempt, code=body.code, message=body.message)
    return {"ok": True}


@router.post("/jobs/{job_id}/cancelled")
def cancelled(job_id: str, body: Fenced, session: SessionDep) -> dict:
    service.cancelled(session=session, job_id=job_id, attempt=body.attempt)
    return {"ok": True}


def _dataset(session: SessionDep, dataset_id: str) -> Dataset:
    ds = session.get(Dataset, dataset_id)
    if ds is None:
        raise NotFound(f"dataset {dataset_id} not found", code="dataset_not_found")
    return ds


@router.get("/datasets/{dataset_id}/archive")
def dataset_archive(dataset_id: str, session: SessionDep) -> FileResponse:
    ds = _dataset(session, dataset_id)
    return FileResponse(get_storage().path(ds.blob_key), headers={"X-Checksum-SHA256": ds.sha256})


@router.get("/datasets/{dataset_id}/manifest")
def dataset_manifest(dataset_id: str, session: SessionDep) -> FileResponse:
    ds = _dataset(session, dataset_id)
    if ds.manifest_key is None:
        raise NotFound("dataset has no manifest yet", code="manifest_not_found")
    return FileResponse(get_storage().path(ds.manifest_key), media_type="application/json")


@router.get("/weights/{weights_id}")
def weights(weights_id: str, session: SessionDep) -> FileResponse:
    return FileResponse(get_storage().path(service.weights_blob(session=session, weights_id=weights_id)))
