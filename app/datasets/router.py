"""Dataset routes: parse, call one service function, return."""

from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from app.config import get_settings
from app.datasets import service
from app.datasets.schemas import DatasetRead
from app.datasets.upload import receive_upload
from app.db import get_sessionmaker
from app.deps import IdempotencyKey, Reader, SessionDep, Writer
from app.errors import ARCHIVE_CODES
from app.idempotency import body_hash, run_idempotent
from app.openapi import BINARY, ERROR_RESPONSES, errors, multipart
from app.schemas import Page
from app.storage import get_storage
from core.ids import new_id

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=DatasetRead,
             summary="Upload a dataset archive (multipart: file, optional name)",
             openapi_extra=multipart({"file": {**BINARY, "description": "a zip or tar(.gz) archive"},
                                      "name": {"type": "string", "maxLength": 200}},
                                     required=["file"], example={"file": "<pets.zip bytes>", "name": "pets"}),
             responses=errors("validation_error", "invalid_upload", "invalid_name",
                              "upload_too_large", "quota_exceeded", "insufficient_storage", "idempotency_mismatch",
                              "idempotency_in_progress", *ARCHIVE_CODES))
async def upload_dataset(request: Request, principal: Writer, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Async so the size cap bites mid-stream; blocking work runs in threads."""
    dataset_id = new_id("ds")
    declared = request.headers.get("content-length", "")
    if declared.isdigit():  # checked again with the real size once streamed
        await anyio.to_thread.run_sync(partial(service.check_upload_quota, tenant=principal.tenant,
                                               declared_bytes=int(declared)))
    up = await receive_upload(request, get_storage(), service.archive_key(dataset_id),
                              cap=get_settings().max_upload_bytes)

    def create() -> tuple[int, dict]:
        with get_sessionmaker()() as session:
            def make() -> tuple[int, dict]:
                ds = service.create_dataset(session=session, tenant=principal.tenant, dataset_id=dataset_id,
                                            writer=up.writer, name=up.name)
                return 201, DatasetRead.of(ds).model_dump(mode="json")

            digest = body_hash(f"{up.writer.sha256}:{up.name}")
            status, body = run_idempotent(session=session, tenant=principal.tenant, route="datasets.create",
                                          key=idempotency_key, body_sha256=digest, create=make)
            up.writer.abort()  # no-op after a commit; drops the file on a replay
            return status, body

    try:
        status, body = await anyio.to_thread.run_sync(create)
    except BaseException:
        await anyio.to_thread.run_sync(up.writer.abort)
        raise
    if body.get("id") == dataset_id:
        service.schedule_processing(dataset_id)
    return JSONResponse(body, status_code=status)


@router.get("", response_model=Page[DatasetRead], summary="List datasets, newest first",
            responses=errors("validation_error", "invalid_request"))
def list_datasets(principal: Reader, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  after: str | None = None) -> Page[DatasetRead]:
    rows, more = service.list_datasets(session=session, tenant=principal.tenant, limit=limit, after=after)
    return Page(data=[DatasetRead.of(r) for r in rows], has_more=more)


@router.get("/{dataset_id}", response_model=DatasetRead, summary="Get a dataset",
            responses=errors("invalid_request", "dataset_not_found"))
def get_dataset(dataset_id: str, principal: Reader, session: SessionDep) -> DatasetRead:
    return DatasetRead.of(service.get_dataset(session=session, tenant=principal.tenant, dataset_id=dataset_id))


@router.delete("/{dataset_id}", status_code=204, summary="Delete a dataset (409 while a job uses it)",
               responses=errors("invalid_request", "dataset_not_found", "dataset_in_use"))
def delete_dataset(dataset_id: str, principal: Writer, session: SessionDep) -> Response:
    service.delete_dataset(session=session, tenant=principal.tenant, dataset_id=dataset_id)
    return Response(status_code=204)
