"""Model routes."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.deps import Reader, SessionDep, Writer
from app.models_api import service
from app.models_api.download import artifact_response
from app.models_api.params import (
    DOWNLOAD_RESPONSES,
    FORMAT,
    PREDICT_BODY,
    PREDICT_DESCRIPTION,
    IfNoneMatch,
    IfRange,
    ModelId,
    RangeHeader,
    TopK,
)
from app.models_api.predict import predict
from app.models_api.schemas import MODEL_EXAMPLE, ModelRead, PredictRead
from app.openapi import ERROR_RESPONSES, errors
from app.schemas import Page

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[ModelRead], summary="List models, newest first",
            responses=errors("validation_error", "invalid_request"))
def list_models(principal: Reader, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                after: Annotated[str | None, Query(examples=[MODEL_EXAMPLE["id"]])] = None) -> Page[ModelRead]:
    rows, more = service.list_models(session=session, tenant=principal.tenant, limit=limit, after=after)
    arts = service.artifacts_of(session, [r.id for r in rows])
    return Page(data=[ModelRead.of(r, arts[r.id]) for r in rows], has_more=more)


@router.get("/{model_id}", response_model=ModelRead, summary="Get a model",
            responses=errors("invalid_request", "model_not_found"))
def get_model(model_id: ModelId, principal: Reader, session: SessionDep) -> ModelRead:
    m = service.get_model(session=session, tenant=principal.tenant, model_id=model_id)
    return ModelRead.of(m, service.artifacts_of(session, [m.id])[m.id])


@router.delete("/{model_id}", status_code=204, summary="Delete a model and its files (409 while an alias points to it)",
               responses=errors("invalid_request", "model_not_found", "model_in_use"))
def delete_model(model_id: ModelId, principal: Writer, session: SessionDep) -> Response:
    service.delete_model(session=session, tenant=principal.tenant, model_id=model_id)
    return Response(status_code=204)


@router.get("/{model_id}/artifacts/{fmt}", summary="Download an artifact (ETag: its sha256; If-None-Match, Range)",
            description="The sha256 is the strong ETag: If-None-Match answers 304 while it is current, and Range "
                        "(with If-Range) resumes a download with 206.",
            response_class=Response, responses={**DOWNLOAD_RESPONSES, **errors(
                "validation_error", "invalid_request", "model_not_found", "artifact_not_found",
                "range_not_satisfiable")})
def download_artifact(model_id: ModelId, fmt: FORMAT, principal: Reader, session: SessionDep, request: Request,
                      if_none_match: IfNoneMatch = None, range: RangeHeader = None, if_range: IfRange = None
                      ) -> Response:
    # The headers are parameters for the documentation's sake; artifact_response reads them from the request.
    art = service.get_artifact(session=session, tenant=principal.tenant, model_id=model_id, fmt=fmt)
    return artifact_response(art, name=model_id, request_headers=request.headers)


@router.post("/{model_id}/predict", response_model=PredictRead, openapi_extra=PREDICT_BODY,
             description=PREDICT_DESCRIPTION,
             summary="Top-k labels per image (multipart field `files`), run on the model's ONNX artifact",
             responses=errors("validation_error", "invalid_request", "model_not_found", "onnx_unavailable",
                              "preprocessing_unavailable", "upload_too_large",
                              "too_many_images", "invalid_upload", "bad_image", "server_busy"))
async def predict_model(model_id: ModelId, request: Request, principal: Reader, top_k: TopK = 5) -> PredictRead:
    # Async so that the caps bite mid-stream (UploadFile would spool the whole body first); the model is looked
    # up, in a thread, before a byte of the body is read.
    return await predict(request, find=partial(service.predict_target, tenant=principal.tenant, model_id=model_id),
                         top_k=top_k)
