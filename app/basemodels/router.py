"""Base-model routes: bring your own backbone weights as safetensors."""

from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ConfigDict

from app.basemodels import service
from app.config import get_settings
from app.datasets.upload import receive_upload
from app.db import get_sessionmaker
from app.deps import IdempotencyKey, Reader, SessionDep, Writer
from app.errors import Invalid
from app.idempotency import body_hash, run_idempotent
from app.openapi import BINARY, ERROR_RESPONSES, errors, multipart
from app.schemas import Out, Page, Stamp
from app.storage import get_storage
from core.ids import new_id

router = APIRouter(prefix="/v1/base-models", tags=["base models"], responses=ERROR_RESPONSES)


class BaseModelRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "bm_01jdr0m3a6c9e2g5j8l1n4q7s0", "arch": "resnet18", "source": "upload", "name": "our-backbone-v3",
        "sha256": "41ab" + "0" * 60, "bytes": 46_830_571, "created_at": "2026-11-27T16:40:00.000000Z"}]})

    id: str
    arch: str
    source: str
    name: str | None
    sha256: str
    bytes: int
    created_at: Stamp


@router.post("", status_code=201, response_model=BaseModelRead,
             summary="Upload backbone weights (multipart: file = safetensors, arch, optional name)",
             openapi_extra=multipart({"file": {**BINARY, "description": "a safetensors file"},
                                      "arch": {"type": "string", "description": "an architecture of the catalogue"},
                                      "name": {"type": "string", "maxLength": 200}},
                                     required=["file", "arch"],
                                     example={"file": "<backbone.safetensors bytes>", "arch": "resnet18"}),
             responses=errors("validation_error", "invalid_upload", "invalid_name",
                              "upload_too_large", "unknown_arch", "invalid_safetensors", "weights_mismatch"))
async def upload_base_model(request: Request, principal: Writer, idempotency_key: IdempotencyKey = None
                            ) -> JSONResponse:
    """Names and shapes are checked against the catalogue; the first mismatch is named. Never unpickled."""
    bm_id = new_id("bm")
    up = await receive_upload(request, get_storage(), f"base_models/{bm_id}.safetensors",
                              cap=get_settings().max_weights_upload_bytes, extra_fields=("arch",))
    arch = up.fields.get("arch")
    if not arch:
        await anyio.to_thread.run_sync(up.writer.abort)
        raise Invalid("the multipart body needs an 'arch' field", code="invalid_upload")

    def create() -> tuple[int, dict]:
        with get_sessionmaker()() as session:
            def make() -> tuple[int, dict]:
                row = service.register_upload(session=session, tenant=principal.tenant, arch=arch,
                                              writer=up.writer, name=up.name)
                return 201, BaseModelRead.model_validate(row).model_dump(mode="json")

            result = run_idempotent(session=session, tenant=principal.tenant, route="base_models.create",
                                    key=idempotency_key, body_sha256=body_hash(f"{up.writer.sha256}:{arch}:{up.name}"),
                                    create=make)
            up.writer.abort()  # no-op after a commit; drops the file on a replay
            return result

    try:
        status, body = await anyio.to_thread.run_sync(create)
    except BaseException:
        await anyio.to_thread.run_sync(up.writer.abort)
        raise
    return JSONResponse(body, status_code=status)


@router.get("", response_model=Page[BaseModelRead], summary="List base models (yours and the imported ones)",
            responses=errors("validation_error", "invalid_request"))
def list_base_models(principal: Reader, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                     after: str | None = None) -> Page[BaseModelRead]:
    rows, more = service.list_base_models(session=session, tenant=principal.tenant, limit=limit, after=after)
    return Page(data=[BaseModelRead.model_validate(r) for r in rows], has_more=more)


@router.get("/{bm_id}", response_model=BaseModelRead, summary="Get a base model",
            responses=errors("invalid_request", "base_model_not_found"))
def get_base_model(bm_id: str, principal: Reader, session: SessionDep) -> BaseModelRead:
    return BaseModelRead.model_validate(service.get_base_model(session=session, tenant=principal.tenant, bm_id=bm_id))


@router.delete("/{bm_id}", status_code=204, summary="Delete your base model (409 while a job uses it)",
               responses=errors("invalid_request", "base_model_not_found", "base_model_in_use"))
def delete_base_model(bm_id: str, principal: Writer, session: SessionDep) -> Response:
    service.delete_base_model(session=session, tenant=principal.tenant, bm_id=bm_id)
    return Response(status_code=204)
