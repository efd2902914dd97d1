"""Key routes, for admins of a tenant."""


from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from app.deps import Admin, SessionDep
from app.keys import service
from app.openapi import ERROR_RESPONSES, errors
from app.schemas import Out, Stamp

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=ERROR_RESPONSES)


_KEY = {"id": "key_01jdr0a1b2c3d4e5f6g7h8j9k0", "tenant": "acme", "name": "ci", "prefix": "k3x9q2",
        "scopes": ["read", "write"], "created_at": "2026-11-28T08:00:00.000000Z", "revoked_at": None}


class KeyCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"scopes": ["read", "write"], "name": "ci"}]})

    scopes: list[str] = Field(default_factory=lambda: ["read"])
    name: str | None = Field(None, max_length=200)


class KeyRead(Out):
    model_config = ConfigDict(json_schema_extra={"examples": [_KEY]})

    id: str
    tenant: str
    name: str | None
    prefix: str
    scopes: list[str]
    created_at: Stamp
    revoked_at: Stamp | None


class KeyCreated(KeyRead):
    model_config = ConfigDict(json_schema_extra={"examples": [{**_KEY, "key": "taas_k3x9q2_<43 characters>"}]})

    key: str  # shown once


class KeyPage(BaseModel):
    data: list[KeyRead]
    has_more: bool


@router.get("", response_model=KeyPage, summary="List the tenant's keys", responses=errors())
def list_keys(principal: Admin, session: SessionDep) -> dict:
    rows = service.list_keys(session=session, tenant=principal.tenant)
    return {"data": [KeyRead.model_validate(r).model_dump(mode="json") for r in rows], "has_more": False}


@router.post("", status_code=201, response_model=KeyCreated, summary="Create a key (the secret is shown once)",
             responses=errors("validation_error", "invalid_json", "request_too_large",
                              "invalid_request", "invalid_scopes"))
def create_key(body: KeyCreate, principal: Admin, session: SessionDep) -> KeyCreated:
    row, plaintext = service.create_key(session=session, tenant=principal.tenant, scopes=body.scopes, name=body.name)
    return KeyCreated(**KeyRead.model_validate(row).model_dump(), key=plaintext)


@router.delete("/{key_id}", status_code=204, summary="Revoke a key",
               responses=errors("invalid_request", "key_not_found"))
def revoke_key(key_id: str, principal: Admin, session: SessionDep) -> Response:
    service.revoke_key(session=session, tenant=principal.tenant, key_id=key_id)
    return Response(status_code=204)
