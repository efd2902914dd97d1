"""Model routes."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from app.deps import Reader, SessionDep, Writer
from app.models_api import service
from app.models_api.schemas import ModelRead
from app.schemas import Page
from app.storage import get_storage

router = APIRouter(prefix="/v1/models", tags=["models"])
MEDIA = {"safetensors": "application/octet-stream", "onnx": "application/octet-stream",
         "config": "application/json"}


@router.get("", response_model=Page[ModelRead], summary="List models, newest first")
def list_models(principal: Reader, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                after: str | None = None) -> Page[ModelRead]:
    rows, more = service.list_models(session=session, tenant=principal.tenant, limit=limit, after=after)
    arts = service.artifacts_of(session, [r.id for r in rows])
    return Page(data=[ModelRead.of(r, arts[r.id]) for r in rows], has_more=more)


@router.get("/{model_id}", response_model=ModelRead, summary="Get a model")
def get_model(model_id: str, principal: Reader, session: SessionDep) -> ModelRead:
    m = service.get_model(session=session, tenant=principal.tenant, model_id=model_id)
    return ModelRead.of(m, service.artifacts_of(session, [m.id])[m.id])


@router.delete("/{model_id}", status_code=204, summary="Delete a model and its files (409 while an alias points to it)")
def delete_model(model_id: str, principal: Writer, session: SessionDep) -> Response:
    service.delete_model(session=session, tenant=principal.tenant, model_id=model_id)
    return Response(status_code=204)


@router.get("/{model_id}/artifacts/{fmt}", summary="Download an artifact (sha256 in X-Checksum-SHA256)",
            response_class=FileResponse)
def download_artifact(model_id: str, fmt: str, principal: Reader, session: SessionDep) -> FileResponse:
    art = service.get_artifact(session=session, tenant=principal.tenant, model_id=model_id, fmt=fmt)
    ext = {"safetensors": "safetensors", "onnx": "onnx", "config": "json"}.get(fmt, "bin")
    return FileResponse(get_storage().path(art.blob_key), media_type=MEDIA.get(fmt, "application/octet-stream"),
                        filename=f"{model_id}.{ext}",
                        headers={"X-Checksum-SHA256": art.sha256, "ETag": f'"{art.sha256}"'})
