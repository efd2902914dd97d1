"""Alias routes: other services fetch "the production model" by name."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from app.aliases import service
from app.aliases.schemas import NAME_PATTERN, AliasHistory, AliasMoveRead, AliasPage, AliasPut, AliasRead
from app.deps import Reader, SessionDep, Writer
from app.errors import NotFound
from app.models import Alias
from app.models_api import service as models
from app.models_api.download import artifact_response
from app.models_api.params import (
    DOWNLOAD_RESPONSES,
    FORMAT,
    PREDICT_BODY,
    PREDICT_DESCRIPTION,
    IfNoneMatch,
    IfRange,
    RangeHeader,
    TopK,
)
from app.models_api.predict import predict
from app.models_api.schemas import ModelRead, PredictRead
from app.openapi import ERROR_RESPONSES, errors
from core.limits import INT4_MAX

router = APIRouter(prefix="/v1/aliases", tags=["aliases"], responses=ERROR_RESPONSES)
Name = Annotated[str, Path(pattern=NAME_PATTERN, examples=["production"],
                           description="lower-case letters, digits, '.', '_' and '-', up to 100")]


def _read(session: Session, aliases: list[Alias]) -> list[AliasRead]:
    found = service.models_of(session, aliases)
    arts = models.artifacts_of(session, list(found))
    return [AliasRead(name=a.name, model_id=a.model_id, created_at=a.created_at, updated_at=a.updated_at,
                      sha256=next((x.sha256 for x in arts[a.model_id] if x.format == "safetensors"), None),
                      model=ModelRead.of(found[a.model_id], arts[a.model_id]))
            for a in aliases if a.model_id in found]


@router.get("", response_model=AliasPage, summary="List aliases by name",
            responses=errors("validation_error", "invalid_request"))
def list_aliases(principal: Reader, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                 after: Annotated[str | None, Query(max_length=100, examples=["production"])] = None) -> AliasPage:
    rows, more = service.list_aliases(session=session, tenant=principal.tenant, limit=limit, after=after)
    return AliasPage(data=_read(session, rows), has_more=more)


@router.put("/{name}", response_model=AliasRead, summary="Point an alias at a model (atomic; 201 when created)",
            responses={201: {"model": AliasRead, "description": "The alias was created"},
                       **errors("validation_error", "invalid_json", "model_not_found")})
def put_alias(name: Name, body: AliasPut, principal: Writer, session: SessionDep) -> JSONResponse:
    alias, created = service.put_alias(session=session, tenant=principal.tenant, name=name, model_id=body.model_id)
    return JSONResponse(_read(session, [alias])[0].model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/{name}", response_model=AliasRead, summary="The model an alias points to, with its sha256",
            responses=errors("validation_error", "alias_not_found", "model_not_found"))
def get_alias(name: Name, principal: Reader, session: SessionDep) -> AliasRead:
    alias = service.get_alias(session=session, tenant=principal.tenant, name=name)
    found = _read(session, [alias])
    if not found:  # only if the model vanished under it, which the model's DELETE refuses
        raise NotFound(f"alias {name!r} points to a missing model", code="model_not_found")
    return found[0]


@router.delete("/{name}", status_code=204, summary="Delete an alias (its history stays)",
               responses=errors("validation_error", "alias_not_found"))
def delete_alias(name: Name, principal: Writer, session: SessionDep) -> Response:
    service.delete_alias(session=session, tenant=principal.tenant, name=name)
    return Response(status_code=204)


@router.get("/{name}/history", response_model=AliasHistory, summary="An alias's moves, newest first",
            responses=errors("validation_error", "alias_not_found"))
def alias_history(name: Name, principal: Reader, session: SessionDep,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  before: Annotated[int | None, Query(ge=1, le=INT4_MAX,
                                                      description="continue below this move id")] = None
                  ) -> AliasHistory:
    rows, more = service.history(session=session, tenant=principal.tenant, name=name, limit=limit, before=before)
    return AliasHistory(data=[AliasMoveRead.model_validate(r) for r in rows], has_more=more)


@router.get("/{name}/artifacts/{fmt}", summary="Download an artifact of the alias's model (ETag: its sha256)",
            description="Poll with If-None-Match: 304 until the alias moves to a model with other bytes.",
            response_class=Response, responses={**DOWNLOAD_RESPONSES,
                                                **errors("validation_error", "alias_not_found", "model_not_found",
                                                         "artifact_not_found",
                                                         "range_not_satisfiable")})
def download_artifact(name: Name, fmt: FORMAT, principal: Reader, session: SessionDep, request: Request,
                      if_none_match: IfNoneMatch = None, range: RangeHeader = None, if_range: IfRange = None
                      ) -> Response:
    # Poll this with If-None-Match: it answers 304 until the alias moves to a model with other bytes.
    art = service.get_artifact(session=session, tenant=principal.tenant, name=name, fmt=fmt)
    return artifact_response(art, name=name, request_headers=request.headers)


@router.post("/{name}/predict", response_model=PredictRead, summary="Predict with the alias's model",
             openapi_extra=PREDICT_BODY, description=PREDICT_DESCRIPTION,
             responses=errors("validation_error", "alias_not_found", "model_not_found", "onnx_unavailable",
                              "preprocessing_unavailable",
                              "upload_too_large", "too_many_images", "invalid_upload", "bad_image", "server_busy"))
async def predict_alias(name: Name, request: Request, principal: Reader, top_k: TopK = 5) -> PredictRead:
    # Async for the same reasons as POST /v1/models/{model_id}/predict.
    return await predict(request, find=partial(service.predict_target, tenant=principal.tenant, name=name),
                         top_k=top_k)
